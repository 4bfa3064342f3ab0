"""Intersection over union for `xyxy` boxes."""

import tensorflow as tf


def _area(boxes):
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def _pairwise_intersection(boxes_a, boxes_b):
    a = boxes_a[..., :, None, :]
    b = boxes_b[..., None, :, :]
    width = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    height = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    return width * height


def pairwise_iou(boxes_a, boxes_b):
    """IoU of every box in `boxes_a` [..., N, 4] with every box in `boxes_b` [..., M, 4] -> [..., N, M].

    Leading (batch) dimensions broadcast. Pairs with an empty union give 0.
    """
    intersection = _pairwise_intersection(boxes_a, boxes_b)
    union = _area(boxes_a)[..., :, None] + _area(boxes_b)[..., None, :] - intersection
    return tf.math.divide_no_nan(intersection, union)


def pairwise_ioa(boxes_a, boxes_b):
    """Intersection of every pair divided by the area of the `boxes_a` box ([..., N, M]): how much of a lies in b."""
    return tf.math.divide_no_nan(_pairwise_intersection(boxes_a, boxes_b), _area(boxes_a)[..., :, None])


def generalized_iou(boxes_a, boxes_b):
    """Element-wise generalised IoU (Rezatofighi et al., 2019) of aligned boxes [..., 4] -> [...]."""
    lower = tf.maximum(boxes_a[..., :2], boxes_b[..., :2])
    upper = tf.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    width = tf.maximum(upper[..., 0] - lower[..., 0], 0.0)
    height = tf.maximum(upper[..., 1] - lower[..., 1], 0.0)
    intersection = width * height
    union = _area(boxes_a) + _area(boxes_b) - intersection
    iou = tf.math.divide_no_nan(intersection, union)
    hull = (tf.maximum(boxes_a[..., 2], boxes_b[..., 2]) - tf.minimum(boxes_a[..., 0], boxes_b[..., 0])) * (
        tf.maximum(boxes_a[..., 3], boxes_b[..., 3]) - tf.minimum(boxes_a[..., 1], boxes_b[..., 1])
    )
    return iou - tf.math.divide_no_nan(hull - union, hull)
