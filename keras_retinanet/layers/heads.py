"""The class and box subnets of RetinaNet, shared across pyramid levels."""

import math

import keras
import tensorflow as tf

from keras_retinanet.layers.group_normalization import GroupNormalization
from keras_retinanet.layers.separable import separable_conv

NORMALIZATIONS = (None, "group_norm")


@keras.saving.register_keras_serializable(package="keras_retinanet")
class RetinaNetHead(keras.layers.Layer):
    """A subnet applied with the same weights to every pyramid level.

    `num_convs` x (3x3 conv + optional GroupNorm + ReLU), then a 3x3 conv with `num_anchors * outputs_per_anchor`
    outputs. Called on the list [P3, ..., P7], it returns one [B, N, outputs_per_anchor] tensor, N = sum over levels
    of H * W * num_anchors, in the AnchorGenerator's order (level, y, x, anchor).

    Convs start from normal(std=0.01) weights and zero bias (the paper). With `prior_probability` pi the last bias is
    -log((1 - pi) / pi), so that every anchor starts with foreground probability pi (the paper's 0.01 for the class
    subnet), which keeps the huge number of background anchors from swamping the loss in the first iterations.
    `separable` makes every 3x3 conv a depthwise 3x3 then a pointwise 1x1 (SSDLite / FPNLite heads: 9C / (9 + C)
    times fewer multiply-adds at C filters, 8.4x at 128), the depthwise kernels from Keras' default initialiser, the
    pointwise ones from normal(std=0.01).

    Args:
        outputs_per_anchor: K classes for the class subnet, 4 for the box subnet.
        num_anchors: anchors per location (paper: 9).
        filters: channels of the hidden convs (paper: 256).
        num_convs: number of hidden convs (paper: 4).
        normalization: None (paper) or "group_norm" (torchvision v2).
        groups, norm_epsilon: GroupNorm settings.
        use_bias: bias on the hidden convs (torchvision v2 drops it before GroupNorm).
        prior_probability: initial foreground probability, or None for a zero bias.
        separable: depthwise-separable convs (phones and boards) instead of full 3x3 convs (the paper).
    """

    def __init__(
        self,
        outputs_per_anchor,
        num_anchors=9,
        filters=256,
        num_convs=4,
        normalization=None,
        groups=32,
        norm_epsilon=1e-5,
        use_bias=True,
        prior_probability=None,
        separable=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"RetinaNetHead normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if prior_probability is not None and not 0.0 < prior_probability < 1.0:
            raise ValueError(f"RetinaNetHead prior_probability must be in (0, 1), got {prior_probability}")
        self.outputs_per_anchor = int(outputs_per_anchor)
        self.num_anchors = int(num_anchors)
        self.filters = int(filters)
        self.num_convs = int(num_convs)
        self.normalization = normalization
        self.groups = int(groups)
        self.norm_epsilon = float(norm_epsilon)
        self.use_bias = bool(use_bias)
        self.prior_probability = prior_probability
        self.separable = bool(separable)

        self.hidden_convs = [
            self._conv(self.filters, use_bias=self.use_bias, name=f"conv_{i}") for i in range(self.num_convs)
        ]
        self.norms = [
            GroupNormalization(self.groups, epsilon=self.norm_epsilon, dtype=self.dtype_policy, name=f"norm_{i}")
            for i in range(self.num_convs)
            if self.normalization == "group_norm"
        ]
        bias = 0.0 if prior_probability is None else -math.log((1.0 - prior_probability) / prior_probability)
        self.output_conv = self._conv(self.num_anchors * self.outputs_per_anchor, use_bias=True, name="output",
                                      bias_initializer=keras.initializers.Constant(bias))

    def _conv(self, filters, use_bias, name, bias_initializer="zeros"):
        """A 3x3 "same" conv with the paper's N(0, 0.01) weights, or its depthwise-separable form (`separable`),
        which starts at the same output scale (`separable_conv`: the pointwise weights N(0, 0.03))."""
        settings = dict(padding="same", use_bias=use_bias, bias_initializer=bias_initializer, dtype=self.dtype_policy,
                        name=name)
        if self.separable:
            return separable_conv(filters, 3, keras.initializers.RandomNormal(stddev=0.03), **settings)
        return keras.layers.Conv2D(filters, 3, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                   **settings)

    def build(self, input_shape):
        shape = tuple(input_shape[0])
        for i, conv in enumerate(self.hidden_convs):
            conv.build(shape)
            shape = shape[:-1] + (self.filters,)
            if self.norms:
                self.norms[i].build(shape)
        self.output_conv.build(shape)

    def call(self, features):
        outputs = []
        for feature in features:
            x = feature
            for i, conv in enumerate(self.hidden_convs):
                x = conv(x)
                if self.norms:
                    x = self.norms[i](x)
                x = tf.nn.relu(x)
            x = self.output_conv(x)
            outputs.append(tf.reshape(x, [tf.shape(x)[0], -1, self.outputs_per_anchor]))
        return tf.concat(outputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], None, self.outputs_per_anchor)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "outputs_per_anchor": self.outputs_per_anchor,
                "num_anchors": self.num_anchors,
                "filters": self.filters,
                "num_convs": self.num_convs,
                "normalization": self.normalization,
                "groups": self.groups,
                "norm_epsilon": self.norm_epsilon,
                "use_bias": self.use_bias,
                "prior_probability": self.prior_probability,
                "separable": self.separable,
            }
        )
        return config
