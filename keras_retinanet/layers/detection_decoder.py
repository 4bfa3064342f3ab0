"""RetinaNet inference: per-level top-k, score threshold, class-wise NMS."""

import keras
import tensorflow as tf

from keras_retinanet.deprecation import renamed_argument


@keras.saving.register_keras_serializable(package="keras_retinanet")
class DetectionDecoder(keras.layers.Layer):
    """Final detections from class logits and decoded boxes of all anchors, as the paper does it.

    Every decoded box is clipped to its image (the image's content, not the padding around it), and boxes then
    narrower or lower than `min_box_size` pixels are dropped (as torchvision's `remove_small_boxes`, but before the
    top-k, so that a box squeezed flat at the edge of the content never takes a candidate's place). Per pyramid
    level, the `pre_nms_top_k` highest (anchor, class) scores above `score_threshold` are kept; the candidates of
    all levels are merged, class-wise NMS (suppressing IoU > `iou_threshold`) runs on them, and the
    `max_detections` best survivors are returned, padded. Runs in float32 whatever the model's dtype policy, and
    compiles with XLA.

    Args:
        score_threshold: candidates need a score above this (paper: 0.05).
        pre_nms_top_k: candidates kept per level before NMS (paper: 1000).
        iou_threshold: NMS threshold (paper: 0.5).
        max_detections: detections kept per image (paper: 100).
        min_box_size: boxes narrower or lower than this (in pixels of the model's input, after clipping) are
            dropped; positive, so that no box of zero area is ever returned (torchvision: 0.01).
        per_image_nms: False: one batched NMS (`tf.image.non_max_suppression_padded`, compiles with XLA); True
            (static batch sizes): image by image with NonMaxSuppressionV5, the NMS LiteRT runs natively. Both are
            greedy and give the same detections.
    """

    def __init__(self, score_threshold=0.05, pre_nms_top_k=1000, iou_threshold=0.5, max_detections=100,
                 min_box_size=0.01, per_image_nms=False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not 0.0 <= score_threshold < 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise ValueError(
                "DetectionDecoder needs 0 <= score_threshold < 1 and 0 < iou_threshold <= 1, got "
                f"score_threshold={score_threshold}, iou_threshold={iou_threshold}"
            )
        if pre_nms_top_k < 1 or max_detections < 1:
            raise ValueError(
                "DetectionDecoder needs pre_nms_top_k >= 1 and max_detections >= 1, got "
                f"pre_nms_top_k={pre_nms_top_k}, max_detections={max_detections}"
            )
        if not 0.0 < min_box_size < float("inf"):
            raise ValueError(f"DetectionDecoder needs a positive, finite min_box_size, got {min_box_size}")
        self.score_threshold = float(score_threshold)
        self.pre_nms_top_k = int(pre_nms_top_k)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.min_box_size = float(min_box_size)
        self.per_image_nms = bool(per_image_nms)

    def call(self, class_logits, boxes, level_anchor_counts, content_size=None, image_size=None):
        """Detections from `class_logits` [B, N, K] and `boxes` [B, N, 4] (`xyxy`, decoded).

        Args:
            level_anchor_counts: anchors of each pyramid level, in order (they sum to N).
            content_size: [height, width] to clip the boxes to, or [B, 2], one per image: each image's size inside
                its padding, so that no box reaches into the padding. (`image_size` is its old name.)

        Returns a dict: boxes [B, D, 4] (`xyxy`), scores [B, D], classes [B, D] int32 (-1 for padding) and
        num_detections [B] int32, D = max_detections.
        """
        content_size = renamed_argument("DetectionDecoder", "content_size", content_size, "image_size", image_size)
        boxes = clip_boxes(tf.cast(boxes, tf.float32), content_size)
        large_enough = tf.reduce_min(boxes[..., 2:] - boxes[..., :2], axis=-1) >= self.min_box_size
        boxes, scores, classes = top_candidates(
            tf.cast(class_logits, tf.float32), boxes, large_enough, level_anchor_counts, self.pre_nms_top_k,
            self.score_threshold,
        )

        # Class-wise NMS in one call: boxes of different classes are shifted apart so they never overlap.
        shift = tf.cast(classes, tf.float32)[..., None] * (tf.reduce_max(boxes) + 1.0)
        if self.per_image_nms:
            if boxes.shape[0] is None:
                raise ValueError("per_image_nms needs a static batch size")
            per_image = [self._image_nms(*pair) for pair in zip(tf.unstack(boxes + shift), tf.unstack(scores))]
            selected, num_detections = (tf.stack(values) for values in zip(*per_image))
        else:
            selected, num_detections = tf.image.non_max_suppression_padded(
                boxes + shift,
                scores,
                max_output_size=self.max_detections,
                iou_threshold=self.iou_threshold,
                score_threshold=0.0,
                pad_to_max_output_size=True,
            )
        keep = tf.range(self.max_detections)[None, :] < num_detections[:, None]
        return {
            "boxes": tf.where(keep[..., None], tf.gather(boxes, selected, batch_dims=1), 0.0),
            "scores": tf.where(keep, tf.gather(scores, selected, batch_dims=1), 0.0),
            "classes": tf.where(keep, tf.gather(classes, selected, batch_dims=1), -1),
            "num_detections": num_detections,
        }

    def _image_nms(self, boxes, scores):
        """NMS of one image's candidates with the op LiteRT runs natively (NON_MAX_SUPPRESSION_V5), giving what
        `non_max_suppression_padded` gives. (LiteRT's kernel selects a box of zero area again and again; the
        candidates here have none.)"""
        selected, _, num_selected = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores, max_output_size=self.max_detections, iou_threshold=self.iou_threshold,
            score_threshold=0.0, soft_nms_sigma=0.0, pad_to_max_output_size=True,
        )
        return selected, num_selected

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "per_image_nms": self.per_image_nms,
                "score_threshold": self.score_threshold,
                "pre_nms_top_k": self.pre_nms_top_k,
                "iou_threshold": self.iou_threshold,
                "max_detections": self.max_detections,
                "min_box_size": self.min_box_size,
            }
        )
        return config


def top_candidates(class_logits, boxes, usable, level_anchor_counts, top_k, score_threshold):
    """The paper's pre-NMS selection: on each pyramid level, the `top_k` best (anchor, class) scores above
    `score_threshold` among the anchors whose box is `usable` [B, N]. Returns boxes [B, C, 4], scores [B, C] (0: no
    candidate) and classes [B, C] (-1: none)."""
    batch_size = tf.shape(class_logits)[0]
    num_classes = tf.shape(class_logits)[2]
    candidate_boxes, candidate_scores, candidate_classes = [], [], []
    start = 0
    for count in level_anchor_counts:
        level = slice(start, start + count)
        scores = tf.where(usable[:, level, None], tf.sigmoid(class_logits[:, level]), -1.0)
        scores = tf.reshape(scores, [batch_size, -1])
        # Pad so that top_k has a static k, even on a level with fewer (anchor, class) pairs than k.
        scores = tf.pad(scores, [[0, 0], [0, top_k]], constant_values=-1.0)
        top_scores, top_indices = tf.math.top_k(scores, k=top_k, sorted=False)
        valid = top_scores > score_threshold
        top_indices = tf.where(valid, top_indices, 0)
        candidate_boxes.append(tf.gather(boxes, start + top_indices // num_classes, batch_dims=1))
        candidate_scores.append(tf.where(valid, top_scores, 0.0))
        candidate_classes.append(tf.where(valid, top_indices % num_classes, -1))
        start += count
    return tf.concat(candidate_boxes, axis=1), tf.concat(candidate_scores, axis=1), tf.concat(candidate_classes, axis=1)


def clip_boxes(boxes, content_size):
    """`xyxy` boxes [..., 4] clipped to an image of `content_size` [height, width], or boxes [B, N, 4] each to the
    size of its own image, `content_size` [B, 2]."""
    content_size = tf.cast(content_size, tf.float32)
    height = content_size[..., 0:1]  # [1] or [B, 1]: broadcasts over the boxes
    width = content_size[..., 1:2]
    return tf.stack(
        [
            tf.clip_by_value(boxes[..., 0], 0.0, width),
            tf.clip_by_value(boxes[..., 1], 0.0, height),
            tf.clip_by_value(boxes[..., 2], 0.0, width),
            tf.clip_by_value(boxes[..., 3], 0.0, height),
        ],
        axis=-1,
    )
