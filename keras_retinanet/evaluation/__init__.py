"""Detection evaluation: COCO AP / AR with pycocotools, of detections or of a trained detector on a dataset."""

from keras_retinanet.evaluation.coco_eval import (
    METRIC_NAMES,
    CocoEvaluation,
    detections_to_coco_results,
    evaluate_coco,
    write_evaluation,
)
from keras_retinanet.evaluation.detector import evaluate_model

__all__ = ["METRIC_NAMES", "evaluate_model", "CocoEvaluation", "detections_to_coco_results", "evaluate_coco", "write_evaluation"]
