"""Box regression losses, summed over positive anchors and divided by their number."""

import keras
import tensorflow as tf

from keras_retinanet.boxes.iou import generalized_iou
from keras_retinanet.losses.normalized import PositiveNormalizedLoss


class _BoxLoss(PositiveNormalizedLoss):
    """`y_true` and `y_pred` are [B, N, 4]; `sample_weight` [B, N] marks the positive anchors (> 0), which are
    also the normaliser. Without `sample_weight` every anchor counts.

    `target_space` says what the model feeds: "deltas" (encoded by the box coder) or "boxes" (decoded `xyxy`).
    """

    target_space = "deltas"

    def coordinate_losses(self, y_true, y_pred):
        raise NotImplementedError

    def anchor_losses(self, y_true, y_pred, sample_weight):
        y_true = tf.cast(y_true, y_pred.dtype)
        weights = tf.ones_like(y_pred[..., 0]) if sample_weight is None else sample_weight
        # Non-positive anchors may hold anything (even inf); zero them so that 0 * inf cannot make a NaN.
        losses = tf.where(weights > 0, self.coordinate_losses(y_true, y_pred), 0.0)
        return losses, weights, weights > 0


@keras.saving.register_keras_serializable(package="keras_retinanet")
class SmoothL1Loss(_BoxLoss):
    """Huber-like loss on box deltas: 0.5 x^2 / beta for |x| < beta, |x| - 0.5 beta otherwise (Detectron beta 0.11;
    beta = 0 is L1)."""

    def __init__(self, beta=0.11, name="smooth_l1_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def coordinate_losses(self, y_true, y_pred):
        error = tf.abs(y_pred - y_true)
        if self.beta == 0:
            return tf.reduce_sum(error, axis=-1)
        return tf.reduce_sum(tf.where(error < self.beta, 0.5 * error**2 / self.beta, error - 0.5 * self.beta), -1)

    def get_config(self):
        config = super().get_config()
        config["beta"] = self.beta
        return config


@keras.saving.register_keras_serializable(package="keras_retinanet")
class L1Loss(_BoxLoss):
    """Sum of absolute errors of the 4 box deltas (detectron2, torchvision v1)."""

    def __init__(self, name="l1_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def coordinate_losses(self, y_true, y_pred):
        return tf.reduce_sum(tf.abs(y_pred - y_true), axis=-1)


@keras.saving.register_keras_serializable(package="keras_retinanet")
class GIoULoss(_BoxLoss):
    """1 - GIoU between decoded `xyxy` boxes (torchvision v2)."""

    target_space = "boxes"

    def __init__(self, name="giou_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def coordinate_losses(self, y_true, y_pred):
        return 1.0 - generalized_iou(y_true, y_pred)
