"""R-CNN box parametrisation (Girshick et al.), as used by RetinaNet."""

import math

import keras
import tensorflow as tf

# Detectron's bound on dw, dh at decoding: a box at most 1000/16 times its anchor.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


@keras.saving.register_keras_serializable(package="keras_retinanet")
class BoxCoder:
    """Encodes boxes as deltas from anchors and back.

    dx = wx (gx - ax) / aw, dy = wy (gy - ay) / ah, dw = ww log(gw / aw), dh = wh log(gh / ah), centres and sizes
    taken from `xyxy` boxes. Decoding clamps dw, dh at `scale_clamp` so that exp() cannot overflow.

    Args:
        weights: (wx, wy, ww, wh). The paper and torchvision use (1, 1, 1, 1).
        scale_clamp: upper bound on the decoded dw / ww and dh / wh.
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=DEFAULT_SCALE_CLAMP):
        weights = tuple(float(w) for w in weights)
        if len(weights) != 4 or min(weights) <= 0:
            raise ValueError(f"BoxCoder weights must be 4 positive numbers, got {weights}")
        self.weights = weights
        self.scale_clamp = float(scale_clamp)

    def encode(self, boxes, anchors):
        """Deltas [..., 4] that turn `anchors` into `boxes` (both `xyxy`, broadcastable)."""
        boxes = tf.convert_to_tensor(boxes, tf.float32)
        anchors = tf.convert_to_tensor(anchors, tf.float32)
        wx, wy, ww, wh = self.weights
        anchor_w, anchor_h, anchor_x, anchor_y = _size_and_centre(anchors)
        box_w, box_h, box_x, box_y = _size_and_centre(boxes)
        return tf.stack(
            [
                wx * (box_x - anchor_x) / anchor_w,
                wy * (box_y - anchor_y) / anchor_h,
                ww * tf.math.log(box_w / anchor_w),
                wh * tf.math.log(box_h / anchor_h),
            ],
            axis=-1,
        )

    def decode(self, deltas, anchors):
        """`xyxy` boxes [..., 4] from `deltas` relative to `anchors` (broadcastable)."""
        deltas = tf.cast(deltas, tf.float32)
        anchors = tf.convert_to_tensor(anchors, tf.float32)
        wx, wy, ww, wh = self.weights
        anchor_w, anchor_h, anchor_x, anchor_y = _size_and_centre(anchors)
        centre_x = deltas[..., 0] / wx * anchor_w + anchor_x
        centre_y = deltas[..., 1] / wy * anchor_h + anchor_y
        width = tf.exp(tf.minimum(deltas[..., 2] / ww, self.scale_clamp)) * anchor_w
        height = tf.exp(tf.minimum(deltas[..., 3] / wh, self.scale_clamp)) * anchor_h
        return tf.stack(
            [centre_x - 0.5 * width, centre_y - 0.5 * height, centre_x + 0.5 * width, centre_y + 0.5 * height],
            axis=-1,
        )

    def get_config(self):
        return {"weights": self.weights, "scale_clamp": self.scale_clamp}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _size_and_centre(boxes):
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return width, height, boxes[..., 0] + 0.5 * width, boxes[..., 1] + 0.5 * height
