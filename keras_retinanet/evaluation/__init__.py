"""Detection evaluation: COCO AP / AR with pycocotools."""

from keras_retinanet.evaluation.coco_eval import (
    METRIC_NAMES,
    CocoEvaluation,
    detections_to_coco_results,
    evaluate_coco,
    write_evaluation,
)

__all__ = ["METRIC_NAMES", "CocoEvaluation", "detections_to_coco_results", "evaluate_coco", "write_evaluation"]
