"""Box geometry, coding and anchor-to-box matching: vectorised TensorFlow, usable in tf.data and in the model.

All boxes here are `xyxy`: (x_min, y_min, x_max, y_max) in pixels, with x_max > x_min for a real box.
"""

from keras_retinanet.boxes.box_coder import BoxCoder
from keras_retinanet.boxes.iou import pairwise_iou, generalized_iou
from keras_retinanet.boxes.labeler import AnchorLabeler
from keras_retinanet.boxes.labels import AnchorTarget, GroundTruth, Match
from keras_retinanet.boxes.matcher import Matcher

__all__ = [
    "AnchorLabeler", "AnchorTarget", "BoxCoder", "GroundTruth", "Match", "Matcher", "generalized_iou", "pairwise_iou",
]
