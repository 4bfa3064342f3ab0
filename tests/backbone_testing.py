"""Helpers of the backbone tests: seeded images and weights, and the relative error."""

import math

import keras
import numpy as np

from keras_retinanet.layers import FrozenBatchNormalization

KERAS_APPLICATIONS_EPSILON = 1.001e-5


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype(np.float32)


def randomize_weights(model, seed):
    """Seeded weights in realistic ranges: he-scaled kernels, small biases, gamma ~ 1, positive variances."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            fan_in = math.prod(layer.kernel.shape[:-1])
            layer.kernel.assign(rng.normal(0, math.sqrt(2 / fan_in), layer.kernel.shape).astype(np.float32))
            if layer.use_bias:
                layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
        elif isinstance(layer, (keras.layers.BatchNormalization, FrozenBatchNormalization)):
            channels = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.7, 1.3, channels).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.2, channels).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 0.3, channels).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels).astype(np.float32))


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
