"""Anchor boxes for the pyramid levels of an image of any size, computed in the graph."""

import keras
import numpy as np
import tensorflow as tf

MODES = ("paper", "torchvision")


@keras.saving.register_keras_serializable(package="keras_retinanet")
class AnchorGenerator(keras.layers.Layer):
    """Anchors (`xyxy`, pixels) for pyramid levels `min_level`..`max_level` of one image size.

    Called with the (padded) image size `[height, width]`, it returns all anchors as an [N, 4] float32 tensor, so one
    model serves any input size. The feature map of level l is ceil(size / 2^l) on each side, as the ResNet + FPN
    backbone produces it.

    Order (the order of a NHWC head output reshaped to [B, N, K]): level, then row y, column x, then the anchor
    index a = ratio_index * len(scales) + scale_index.

    Modes:
      - "paper": an anchor of level l has area (size_l * scale)^2 and height / width = ratio, centred at
        ((x + offset) * 2^l, (y + offset) * 2^l).
      - "torchvision": as torchvision's AnchorGenerator, for converted weights: sizes int-truncated
        (int(size_l * scale)), cell anchors rounded half-to-even, offset 0, and the stride of a level is
        `padded_size // feature_size`, computed separately for height and width.

    Args:
        min_level, max_level: pyramid levels (paper: 3 and 7).
        sizes: base anchor size of each level (paper: 4 * 2^l, i.e. 32 ... 512).
        scales: multipliers of the base size (paper: 2^0, 2^(1/3), 2^(2/3)).
        aspect_ratios: height / width ratios (paper: 0.5, 1, 2).
        offset: anchor centre within its cell, in strides (paper mode only; default 0.5, the cell centre).
        mode: "paper" or "torchvision".
    """

    def __init__(
        self,
        min_level=3,
        max_level=7,
        sizes=None,
        scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios=(0.5, 1.0, 2.0),
        offset=None,
        mode="paper",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"AnchorGenerator mode must be one of {MODES}, got {mode!r}")
        if not 1 <= min_level <= max_level:
            raise ValueError(f"AnchorGenerator needs 1 <= min_level <= max_level, got {min_level}, {max_level}")
        levels = range(min_level, max_level + 1)
        sizes = tuple(float(4 * 2**level) for level in levels) if sizes is None else tuple(float(s) for s in sizes)
        if len(sizes) != len(levels):
            raise ValueError(f"AnchorGenerator needs one size per level {list(levels)}, got sizes={sizes}")
        if mode == "torchvision" and offset not in (None, 0, 0.0):
            raise ValueError(f"AnchorGenerator mode 'torchvision' places anchors at offset 0, got offset={offset}")
        if min(sizes) <= 0 or not scales or min(scales) <= 0 or not aspect_ratios or min(aspect_ratios) <= 0:
            raise ValueError(
                f"AnchorGenerator sizes, scales and aspect_ratios must be positive and non-empty, got sizes={sizes}, "
                f"scales={scales}, aspect_ratios={aspect_ratios}"
            )
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.sizes = sizes
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.offset = (0.5 if mode == "paper" else 0.0) if offset is None else float(offset)
        self.mode = mode
        self._cell_anchors = [self._cell_anchors_for(size) for size in self.sizes]

    @property
    def cell_anchors(self):
        """Per level, from `min_level`, the [A, 4] float32 anchors of one location centred at the origin (NumPy):
        a location's anchors are these shifted to its centre."""
        return list(self._cell_anchors)

    @property
    def num_anchors_per_location(self):
        return len(self.scales) * len(self.aspect_ratios)

    def _cell_anchors_for(self, size):
        """[A, 4] anchors centred at the origin, in the documented order."""
        if self.mode == "torchvision":
            # float32 throughout and round-half-to-even, exactly as torchvision computes them.
            box_sizes = np.array([int(size * scale) for scale in self.scales], np.float32)
            height_ratios = np.sqrt(np.array(self.aspect_ratios, np.float32))
            widths = ((np.float32(1) / height_ratios)[:, None] * box_sizes[None, :]).reshape(-1)
            heights = (height_ratios[:, None] * box_sizes[None, :]).reshape(-1)
            return np.round(np.stack([-widths, -heights, widths, heights], axis=1) / np.float32(2))
        box_sizes = size * np.array(self.scales)
        height_ratios = np.sqrt(np.array(self.aspect_ratios))
        widths = (box_sizes[None, :] / height_ratios[:, None]).reshape(-1)
        heights = (box_sizes[None, :] * height_ratios[:, None]).reshape(-1)
        return (np.stack([-widths, -heights, widths, heights], axis=1) / 2).astype(np.float32)

    def feature_sizes(self, padded_size):
        """[(height, width)] int32 scalars of each level's feature map for `padded_size` = [height, width]."""
        padded_size = tf.cast(padded_size, tf.int32)
        height, width = padded_size[0], padded_size[1]
        sizes = []
        for level in range(1, self.max_level + 1):
            height, width = (height + 1) // 2, (width + 1) // 2
            if level >= self.min_level:
                sizes.append((height, width))
        return sizes

    def level_anchor_counts(self, padded_size):
        """Number of anchors of each level, in output order."""
        return [h * w * self.num_anchors_per_location for h, w in self.feature_sizes(padded_size)]

    def __call__(self, padded_size, **kwargs):
        # Accept a plain (height, width) pair as well as a tensor.
        if isinstance(padded_size, (list, tuple)):
            padded_size = tf.constant(padded_size, tf.int32)
        return super().__call__(padded_size, **kwargs)

    def call(self, padded_size):
        padded_size = tf.cast(padded_size, tf.int32)
        anchors = []
        for level, (height, width), cell_anchors in zip(
            range(self.min_level, self.max_level + 1), self.feature_sizes(padded_size), self._cell_anchors
        ):
            if self.mode == "torchvision":
                stride_y = tf.cast(padded_size[0] // height, tf.float32)
                stride_x = tf.cast(padded_size[1] // width, tf.float32)
            else:
                stride_y = stride_x = float(2**level)
            shift_y = (tf.cast(tf.range(height), tf.float32) + self.offset) * stride_y
            shift_x = (tf.cast(tf.range(width), tf.float32) + self.offset) * stride_x
            shift_y, shift_x = tf.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = tf.reshape(tf.stack([shift_x, shift_y, shift_x, shift_y], axis=-1), [-1, 1, 4])
            anchors.append(tf.reshape(shifts + cell_anchors[None], [-1, 4]))
        return tf.concat(anchors, axis=0)

    def compute_output_spec(self, padded_size):
        return keras.KerasTensor((None, 4), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "min_level": self.min_level,
                "max_level": self.max_level,
                "sizes": self.sizes,
                "scales": self.scales,
                "aspect_ratios": self.aspect_ratios,
                "offset": self.offset,
                "mode": self.mode,
            }
        )
        return config
