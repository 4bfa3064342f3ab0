"""IoU matching of anchors to ground-truth boxes (the paper's 0.5 / 0.4 rule)."""

import keras
import tensorflow as tf

from keras_retinanet.boxes.labels import Match


@keras.saving.register_keras_serializable(package="keras_retinanet")
class Matcher:
    """Assigns every anchor to at most one ground-truth box.

    An anchor whose best IoU is >= `positive_threshold` is positive (matched to that box), below
    `negative_threshold` negative, and in between ignored. With `allow_low_quality_matches`, every box's
    highest-IoU anchors (ties included, IoU > 0) become positive too, so that no box is left without an anchor;
    such an anchor stays matched to its own best box, as in Detectron and torchvision.

    Args:
        positive_threshold: IoU at or above which an anchor is foreground (paper: 0.5).
        negative_threshold: IoU below which an anchor is background (paper: 0.4).
        allow_low_quality_matches: see above.
    """

    def __init__(self, positive_threshold=0.5, negative_threshold=0.4, allow_low_quality_matches=True):
        if not 0.0 <= negative_threshold <= positive_threshold <= 1.0:
            raise ValueError(
                "Matcher needs 0 <= negative_threshold <= positive_threshold <= 1, got "
                f"negative_threshold={negative_threshold}, positive_threshold={positive_threshold}"
            )
        self.positive_threshold = float(positive_threshold)
        self.negative_threshold = float(negative_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, iou, valid_boxes):
        """Matches anchors (rows) to boxes (columns).

        Args:
            iou: [B, N, M] IoU of N anchors with M (padded) boxes.
            valid_boxes: [B, M] bool, False for padding columns.

        Returns:
            matched_indices: [B, N] int32 index of each anchor's best valid box (M where an image has none).
            match_labels: [B, N] int32 `Match` verdicts: POSITIVE, NEGATIVE or BETWEEN_THRESHOLDS.
        """
        iou = tf.convert_to_tensor(iou, tf.float32)
        valid_boxes = tf.convert_to_tensor(valid_boxes, tf.bool)
        # A trailing column of -1 lets images without boxes (M = 0 or all padding) go through argmax unchanged.
        no_box = -tf.ones(tf.concat([tf.shape(iou)[:2], [1]], axis=0))
        iou = tf.concat([tf.where(valid_boxes[:, None, :], iou, -1.0), no_box], axis=2)
        matched_indices = tf.argmax(iou, axis=2, output_type=tf.int32)
        best_iou = tf.reduce_max(iou, axis=2)

        match_labels = tf.where(
            best_iou >= self.positive_threshold,
            Match.POSITIVE,
            tf.where(best_iou < self.negative_threshold, Match.NEGATIVE, Match.BETWEEN_THRESHOLDS),
        )
        if self.allow_low_quality_matches:
            best_iou_per_box = tf.reduce_max(iou, axis=1, keepdims=True)
            is_best_anchor = (iou == best_iou_per_box) & (best_iou_per_box > 0.0)
            match_labels = tf.where(tf.reduce_any(is_best_anchor, axis=2), Match.POSITIVE, match_labels)
        return matched_indices, tf.cast(match_labels, tf.int32)

    def get_config(self):
        return {
            "positive_threshold": self.positive_threshold,
            "negative_threshold": self.negative_threshold,
            "allow_low_quality_matches": self.allow_low_quality_matches,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
