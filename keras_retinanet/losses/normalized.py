"""Base class of the losses normalised by the global number of positive anchors."""

import keras
import tensorflow as tf


def global_sum(value):
    """Sum of `value` over the replicas of the current `tf.distribute` replica context (itself outside one)."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return value


class PositiveNormalizedLoss(keras.losses.Loss):
    """sum(per-anchor loss * weight) / max(1, number of positive anchors in the global batch).

    `anchors` ([N, 4] `xyxy`) are passed by `RetinaNet` to the losses that say they need them (`needs_anchors`).

    Under a `tf.distribute` strategy each replica returns its share of the global loss (its own sum divided by the
    global count), so that the gradients Keras sums over replicas equal those of a single device on the whole batch.
    Subclasses implement `anchor_losses`.
    """

    def __init__(self, name=None, dtype=None, **kwargs):
        kwargs.pop("reduction", None)  # Normalisation is this class's job; the reduction is fixed.
        super().__init__(name=name, reduction="sum", dtype=dtype, **kwargs)

    needs_anchors = False  # whether `select_anchors` needs the anchor boxes

    def anchor_losses(self, y_true, y_pred, sample_weight):
        """Returns (per-anchor loss, per-anchor weight, per-anchor positive indicator), each [..., N]."""
        raise NotImplementedError

    def select_anchors(self, losses, weights, positives, anchors):
        """Returns (the weights the loss sums with, the anchors its normaliser counts): here every anchor with its
        weight, normalised by the positives. Hard example mining (`OHEMLoss`) selects."""
        return weights, positives

    def __call__(self, y_true, y_pred, sample_weight=None, anchors=None):
        with tf.name_scope(self.name):
            y_true = tf.convert_to_tensor(y_true)
            y_pred = tf.cast(y_pred, self.dtype)
            if sample_weight is not None:
                sample_weight = tf.cast(sample_weight, self.dtype)
            losses, weights, positives = self.anchor_losses(y_true, y_pred, sample_weight)
            weights, counted = self.select_anchors(losses, weights, positives, anchors)
            count = global_sum(tf.reduce_sum(tf.cast(counted, self.dtype)))
            return tf.reduce_sum(losses * weights) / tf.maximum(tf.stop_gradient(count), 1.0)
