"""Online hard example mining (OHEM), the baseline the focal loss is compared with in Sec. 5.1 / Table 1d."""

import keras
import tensorflow as tf

from keras_retinanet.losses.focal import _ClassificationLoss


@keras.saving.register_keras_serializable(package="keras_retinanet")
class OHEMLoss(_ClassificationLoss):
    """Sigmoid cross-entropy over the hardest anchors only, as the paper ran OHEM for Table 1d.

    Per image, every non-ignored anchor is scored by its loss (summed over classes); non-maximum suppression at
    `nms_iou_threshold` over the anchor boxes, in order of loss, removes anchors that overlap a harder one; the
    `batch_size_per_image` hardest survivors form the minibatch. With `positive_fraction` (0.25 is the paper's
    "OHEM 1:3") at most that share of the minibatch are positive anchors (the hardest, after their own NMS) and
    negatives fill the rest, as Fast R-CNN fills its minibatches; None selects from all anchors alike. The loss is
    the sum over the selected anchors divided by their number in the global batch. Selection is computed in the
    graph and carries no gradient.

    Needs the anchors: `loss(y_true, logits, sample_weight, anchors=anchors)` with `anchors` [N, 4] `xyxy`.

    Args:
        batch_size_per_image: anchors kept per image (paper: 128, 256, 512).
        positive_fraction: None, or the largest share of positives in the minibatch, in (0, 1].
        nms_iou_threshold: IoU above which a lower-loss anchor is suppressed (paper: 0.7 and 0.5).
        alpha: optional class balancing as in `FocalLoss` (None: plain cross-entropy, the paper's OHEM).
    """

    needs_anchors = True

    def __init__(self, batch_size_per_image=128, positive_fraction=None, nms_iou_threshold=0.7, alpha=None,
                 name="ohem_loss", **kwargs):
        super().__init__(alpha, name=name, **kwargs)
        if int(batch_size_per_image) < 1:
            raise ValueError(f"OHEMLoss batch_size_per_image must be >= 1, got {batch_size_per_image}")
        if positive_fraction is not None and not 0.0 < positive_fraction <= 1.0:
            raise ValueError(f"OHEMLoss positive_fraction must be in (0, 1] or None, got {positive_fraction}")
        if not 0.0 < nms_iou_threshold <= 1.0:
            raise ValueError(f"OHEMLoss nms_iou_threshold must be in (0, 1], got {nms_iou_threshold}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = None if positive_fraction is None else float(positive_fraction)
        self.nms_iou_threshold = float(nms_iou_threshold)

    def element_losses(self, targets, logits):
        return self._balance(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), targets)

    def select_anchors(self, losses, weights, positives, anchors):
        if anchors is None:
            raise ValueError("OHEMLoss needs the anchors: call it with anchors=[N, 4] xyxy boxes")
        valid = weights > 0
        scores = tf.stop_gradient(tf.where(valid, losses, -1.0))
        if self.positive_fraction is None:
            selected = self.hardest(scores, valid, anchors, self.batch_size_per_image)
        else:
            is_positive = valid & (positives > 0)
            max_positives = max(1, int(self.batch_size_per_image * self.positive_fraction))
            selected_positives = self.hardest(tf.where(is_positive, scores, -1.0), is_positive, anchors, max_positives)
            room = self.batch_size_per_image - tf.reduce_sum(tf.cast(selected_positives, tf.int32), -1, keepdims=True)
            is_negative = valid & ~is_positive
            selected_negatives = self.hardest(tf.where(is_negative, scores, -1.0), is_negative, anchors,
                                              self.batch_size_per_image, room)
            selected = selected_positives | selected_negatives
        selected = tf.cast(selected, weights.dtype)
        return weights * selected, selected

    def hardest(self, scores, valid, anchors, max_selected, room=None):
        """[B, N] bool: per image, the `max_selected` (and at most `room` [B, 1]) highest-scoring `valid` anchors
        left by NMS."""
        boxes = tf.broadcast_to(tf.cast(anchors, tf.float32)[None], [tf.shape(scores)[0], tf.shape(anchors)[0], 4])
        indices, num_kept = tf.image.non_max_suppression_padded(
            boxes, tf.cast(scores, tf.float32), max_selected, iou_threshold=self.nms_iou_threshold,
            pad_to_max_output_size=True, canonicalized_coordinates=True,
        )
        rank = tf.range(max_selected)[None]
        # Invalid anchors sort last: they only fill slots that the valid ones left empty, and are dropped here.
        kept = tf.gather(valid, indices, batch_dims=1) & (rank < num_kept[:, None])
        if room is not None:
            kept &= rank < room
        batch_index = tf.broadcast_to(tf.range(tf.shape(scores)[0])[:, None], tf.shape(indices))
        kept_indices = tf.boolean_mask(tf.stack([batch_index, indices], -1), kept)
        return tf.scatter_nd(kept_indices, tf.ones(tf.shape(kept_indices)[:1]), tf.shape(scores)) > 0

    def get_config(self):
        config = super().get_config()
        config.update({"batch_size_per_image": self.batch_size_per_image,
                       "positive_fraction": self.positive_fraction, "nms_iou_threshold": self.nms_iou_threshold})
        return config
