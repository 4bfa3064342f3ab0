"""Training targets for every anchor from padded ground-truth boxes."""

import keras
import tensorflow as tf

from keras_retinanet.boxes.box_coder import BoxCoder
from keras_retinanet.boxes.iou import pairwise_ioa, pairwise_iou
from keras_retinanet.boxes.labels import AnchorTarget, GroundTruth, Match
from keras_retinanet.boxes.matcher import Matcher


@keras.saving.register_keras_serializable(package="keras_retinanet")
class AnchorLabeler:
    """Turns padded ground truth into per-anchor class and box targets, for a batch or a single image.

    Vectorised over boxes and images (one IoU matrix, no Python loop), so it runs inside the model's
    `compute_loss`, inside `tf.data`, and under XLA.

    Ground-truth rows labelled `GroundTruth.IGNORE_REGION` (-2) are regions, such as COCO crowd boxes, that match no
    anchor: an anchor that is not positive and lies at least `ignore_region_threshold` inside one (intersection over
    the anchor's area) is ignored rather than trained as background.

    Args:
        matcher: a `Matcher` (default: the paper's 0.5 / 0.4 with low-quality matches).
        box_coder: a `BoxCoder` (default: weights (1, 1, 1, 1)).
        ignore_region_threshold: share of an anchor inside an ignore region that makes it ignored.
    """

    def __init__(self, matcher=None, box_coder=None, ignore_region_threshold=0.5):
        self.matcher = matcher or Matcher()
        self.box_coder = box_coder or BoxCoder()
        self.ignore_region_threshold = float(ignore_region_threshold)

    def __call__(self, anchors, boxes, labels):
        """Labels `anchors` [N, 4] against `boxes` [B, M, 4] (`xyxy`) with `labels` [B, M].

        A label of `GroundTruth.PADDING` (-1) marks a padding row, `GroundTruth.IGNORE_REGION` (-2) an
        ignore region (see above). Unbatched `boxes` [M, 4] and `labels` [M] are accepted too.

        Returns a dict:
            class_targets: [B, N] int32: the matched box's class for positives, else `AnchorTarget.BACKGROUND`
                (-1) or `AnchorTarget.IGNORED` (-2).
            box_targets: [B, N, 4] encoded deltas to the matched box (zero where not positive).
            matched_boxes: [B, N, 4] the matched box (the anchor itself where not positive).
        """
        boxes = tf.convert_to_tensor(boxes, tf.float32)
        labels = tf.cast(labels, tf.int32)
        unbatched = boxes.shape.rank == 2
        if unbatched:
            boxes, labels = boxes[None], labels[None]
        anchors = tf.convert_to_tensor(anchors, tf.float32)

        valid = labels >= 0
        matched_indices, match_labels = self.matcher(pairwise_iou(anchors, boxes), valid)
        # Index M (one past the padded boxes) is the "no box" row the matcher uses for empty images.
        padded_boxes = tf.pad(boxes, [[0, 0], [0, 1], [0, 0]])
        padded_labels = tf.pad(labels, [[0, 0], [0, 1]], constant_values=GroundTruth.PADDING)
        positive = match_labels == Match.POSITIVE

        ignored = match_labels == Match.BETWEEN_THRESHOLDS
        in_region = (pairwise_ioa(anchors, boxes) >= self.ignore_region_threshold) & (
            labels == GroundTruth.IGNORE_REGION
        )[:, None, :]
        ignored |= tf.reduce_any(in_region, axis=2)
        class_targets = tf.where(
            positive,
            tf.gather(padded_labels, matched_indices, batch_dims=1),
            tf.where(ignored, AnchorTarget.IGNORED, AnchorTarget.BACKGROUND),
        )
        matched_boxes = tf.where(
            positive[..., None], tf.gather(padded_boxes, matched_indices, batch_dims=1), anchors[None]
        )
        targets = {
            "class_targets": class_targets,
            "box_targets": self.box_coder.encode(matched_boxes, anchors[None]),
            "matched_boxes": matched_boxes,
        }
        if unbatched:
            targets = {key: value[0] for key, value in targets.items()}
        return targets

    def get_config(self):
        return {
            "matcher": keras.saving.serialize_keras_object(self.matcher),
            "box_coder": keras.saving.serialize_keras_object(self.box_coder),
            "ignore_region_threshold": self.ignore_region_threshold,
        }

    @classmethod
    def from_config(cls, config):
        return cls(
            matcher=keras.saving.deserialize_keras_object(config["matcher"]),
            box_coder=keras.saving.deserialize_keras_object(config["box_coder"]),
            ignore_region_threshold=config["ignore_region_threshold"],
        )
