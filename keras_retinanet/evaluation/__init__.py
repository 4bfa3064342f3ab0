"""Detection evaluation: COCO AP / AR (pycocotools or faster-coco-eval) of detections or of a trained detector on a
dataset, and the analysis of its errors (`analysis`, `report.write_analysis`: curves, error breakdown, confusion
matrix, galleries)."""

from keras_retinanet.evaluation.coco_eval import (
    EVALUATORS,
    METRIC_NAMES,
    CocoEvaluation,
    detections_to_coco_results,
    evaluate_coco,
    write_evaluation,
)
from keras_retinanet.evaluation.detector import evaluate_litert, evaluate_model

__all__ = ["EVALUATORS", "METRIC_NAMES", "evaluate_litert", "evaluate_model", "CocoEvaluation",
           "detections_to_coco_results", "evaluate_coco", "write_evaluation"]
