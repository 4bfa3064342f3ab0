"""Frozen batch normalization: a fixed per-channel affine transform."""

import keras
import tensorflow as tf
from keras import ops

# TF's smallest epsilon for FusedBatchNorm (smaller ones are raised to it, as cuDNN requires).
FUSED_BATCH_NORM_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="keras_retinanet")
class FrozenBatchNormalization(keras.layers.Layer):
    """Batch normalization with fixed statistics and affine parameters.

    Computes `x * scale + shift` with `scale = gamma / sqrt(moving_variance + epsilon)` and
    `shift = beta - moving_mean * scale` over the last axis. All four weights are non-trainable.

    Why not `keras.layers.BatchNormalization(trainable=False)`: TF's fused batch norm silently raises
    epsilon to at least 1.001e-5, while converted detection checkpoints (torchvision) need `epsilon=0`.
    The affine is computed in float32 and the result cast to the compute dtype, so the layer stays exact
    under mixed precision. On feature maps it runs as one inference-mode `FusedBatchNormV3` op, which TF's graph
    optimiser fuses with the convolution before it (and the ReLU after) into one oneDNN kernel on CPU: no extra
    pass over the activations, which `bin/benchmark` measured as most of the speed-up from folding the
    normalisation into the convolutions (the weights, the config and training stay as they are).

    Args:
        epsilon: added to the variance, `>= 0` (0 is allowed).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if epsilon < 0:
            raise ValueError(f"FrozenBatchNormalization: epsilon must be >= 0, got {epsilon}.")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("FrozenBatchNormalization: the channel (last) dimension must be known.")
        for name, initializer in (
            ("gamma", "ones"),
            ("beta", "zeros"),
            ("moving_mean", "zeros"),
            ("moving_variance", "ones"),
        ):
            # autocast=False: read in float32 even when the compute dtype is bfloat16/float16.
            weight = self.add_weight(
                name=name,
                shape=(channels,),
                initializer=initializer,
                dtype="float32",
                trainable=False,
                autocast=False,
            )
            setattr(self, name, weight)

    def call(self, inputs):
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        shift = self.beta - self.moving_mean * scale
        if len(inputs.shape) == 4:
            return _fused_scale_and_shift(inputs, scale, shift)
        outputs = ops.cast(inputs, "float32") * scale + shift
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _fused_scale_and_shift(inputs, scale, shift):
    """`inputs * scale + shift` on feature maps as one inference-mode FusedBatchNormV3 (which Grappler fuses into the
    convolution before it), with the gradient `upstream * scale` of the affine: the op's own gradient would keep
    every normalised activation alive for the backward pass (a third more peak memory in a ResNet-50 train step)."""

    @tf.custom_gradient
    def scale_and_shift(inputs):
        # The op computes (x - mean) * scale / sqrt(variance + eps) + offset; mean 0 and variance 1 - eps make that
        # x * scale + shift (to a float32 rounding) whatever the layer's own epsilon, 0 included.
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            scale,
            shift,
            mean=tf.zeros_like(scale),
            variance=tf.fill(tf.shape(scale), 1.0 - FUSED_BATCH_NORM_MIN_EPSILON),
            epsilon=FUSED_BATCH_NORM_MIN_EPSILON,
            is_training=False,
        )

        def gradient(upstream):
            return upstream * tf.cast(scale, upstream.dtype)

        return outputs, gradient

    return scale_and_shift(inputs)
