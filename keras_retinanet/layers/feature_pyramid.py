"""Feature pyramid network (Lin et al., 2017) producing P3-P7 from C3-C5, as RetinaNet uses it."""

import keras
import tensorflow as tf

from keras_retinanet.layers.separable import separable_conv

P6_INPUTS = ("c5", "p5")


@keras.saving.register_keras_serializable(package="keras_retinanet")
class FeaturePyramid(keras.layers.Layer):
    """P3-P7 from backbone features [C3, C4, C5].

    P3-P5: a 1x1 lateral conv on C3-C5 plus the nearest-upsampled coarser level, then a 3x3 output conv.
    P6: a 3x3 stride-2 conv on C5 (the paper) or on P5 (torchvision v1). P7: a 3x3 stride-2 conv on ReLU(P6).
    Stride-2 convs pad symmetrically (PyTorch padding=1), so that converted weights give the same numbers.
    `separable` makes the 3x3 convs depthwise-separable (FPNLite, for phones and boards); the laterals stay 1x1.

    Args:
        filters: channels of every pyramid level (paper: 256).
        p6_input: "c5" (paper, torchvision v2) or "p5" (torchvision v1).
        relu_before_p7: apply ReLU to P6 before computing P7 (paper: True).
        kernel_initializer: initialiser of every conv (of a separable conv: of both its kernels).
        separable: depthwise 3x3 + pointwise 1x1 instead of each 3x3 conv.
    """

    # The levels it produces: what the anchor generator of a model with this pyramid must cover.
    min_level = 3
    max_level = 7

    def __init__(
        self, filters=256, p6_input="c5", relu_before_p7=True, kernel_initializer="glorot_uniform", separable=False,
        **kwargs
    ):
        super().__init__(**kwargs)
        if p6_input not in P6_INPUTS:
            raise ValueError(f"FeaturePyramid p6_input must be one of {P6_INPUTS}, got {p6_input!r}")
        self.filters = int(filters)
        self.p6_input = p6_input
        self.relu_before_p7 = bool(relu_before_p7)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.separable = bool(separable)

        def conv(name, kernel_size, strides=1):
            settings = dict(strides=strides, padding="same" if strides == 1 else "valid", dtype=self.dtype_policy,
                            name=name)
            if self.separable and kernel_size > 1:
                return separable_conv(self.filters, kernel_size, self.kernel_initializer, **settings)
            return keras.layers.Conv2D(self.filters, kernel_size, kernel_initializer=self.kernel_initializer,
                                       **settings)

        self.lateral_convs = [conv(f"lateral_p{level}", 1) for level in (3, 4, 5)]
        self.output_convs = [conv(f"output_p{level}", 3) for level in (3, 4, 5)]
        self.p6_conv = conv("p6", 3, strides=2)
        self.p7_conv = conv("p7", 3, strides=2)

    def build(self, input_shape):
        # Spatial sizes vary from call to call: build on channels only.
        def shape(channels):
            return (None, None, None, channels)

        for lateral, output, c_shape in zip(self.lateral_convs, self.output_convs, input_shape):
            lateral.build(shape(c_shape[-1]))
            output.build(shape(self.filters))
        self.p6_conv.build(shape(input_shape[-1][-1] if self.p6_input == "c5" else self.filters))
        self.p7_conv.build(shape(self.filters))

    def call(self, inputs):
        c3, c4, c5 = inputs
        laterals = [conv(c) for conv, c in zip(self.lateral_convs, (c3, c4, c5))]
        merged = [laterals[2]]
        for lateral in (laterals[1], laterals[0]):
            merged.insert(0, lateral + upsample_nearest(merged[0], tf.shape(lateral)[1:3]))
        p3, p4, p5 = [conv(m) for conv, m in zip(self.output_convs, merged)]
        p6 = self.p6_conv(_pad_one(c5 if self.p6_input == "c5" else p5))
        p7 = self.p7_conv(_pad_one(tf.nn.relu(p6) if self.relu_before_p7 else p6))
        return [p3, p4, p5, p6, p7]

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0][:3]
        shapes = [shape[:3] + (self.filters,) for shape in input_shape]
        for _ in range(2):
            height, width = [None if d is None else (d + 1) // 2 for d in (height, width)]
            shapes.append((batch, height, width, self.filters))
        return shapes

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "p6_input": self.p6_input,
                "relu_before_p7": self.relu_before_p7,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "separable": self.separable,
            }
        )
        return config


def _pad_one(x):
    return tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])


def upsample_nearest(x, size):
    """Nearest-neighbour resize to `size`: output pixel i takes input pixel floor(i * in / out), as PyTorch's
    `interpolate(mode="nearest")`. Gathers rather than ResizeNearestNeighbor, whose gradient XLA cannot compile."""
    for axis in (1, 2):
        in_size, out_size = tf.shape(x)[axis], size[axis - 1]
        x = tf.gather(x, tf.range(out_size) * in_size // out_size, axis=axis)
    return x
