"""Group normalization over the channels of NHWC feature maps, with accurate float32 statistics."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_retinanet")
class GroupNormalization(keras.layers.GroupNormalization):
    """`keras.layers.GroupNormalization` over the last axis, its statistics reduced in two steps: over the spatial
    axes for each channel, then over the channels of each group.

    Why: Keras reduces (height, width, channels of a group) in one float32 reduction, which TensorFlow's CPU kernels
    computed with up to 4.5e-5 relative error in the variance on an 800 x 1248 image's P3 map (measured; torch:
    1e-7). Through the four GroupNorms of a torchvision v2 head that put the outputs 6e-5 off torchvision's, and
    7e-6 with two steps. Statistics and normalisation run in float32 whatever the compute dtype.
    """

    def __init__(self, groups=32, axis=-1, **kwargs):
        if axis != -1:
            raise ValueError(f"GroupNormalization normalises the last axis only, got axis={axis}")
        super().__init__(groups=groups, axis=axis, **kwargs)

    def call(self, inputs):
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        grouped = tf.reshape(
            tf.cast(inputs, tf.float32), tf.concat([shape[:-1], [self.groups, channels // self.groups]], axis=0)
        )
        spatial = list(range(1, len(inputs.shape) - 1))

        def group_mean(values):
            return tf.reduce_mean(tf.reduce_mean(values, axis=spatial, keepdims=True), axis=-1, keepdims=True)

        centred = grouped - group_mean(grouped)
        outputs = tf.reshape(centred * tf.math.rsqrt(group_mean(tf.square(centred)) + self.epsilon), shape)
        if self.scale:
            outputs *= tf.cast(self.gamma, tf.float32)
        if self.center:
            outputs += tf.cast(self.beta, tf.float32)
        return tf.cast(outputs, self.compute_dtype)
