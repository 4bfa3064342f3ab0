"""FrozenBatchNormalization: the frozen affine against float64, its weights, bfloat16."""

import keras
import numpy as np
import pytest

from keras_retinanet.layers import FrozenBatchNormalization
from backbone_testing import KERAS_APPLICATIONS_EPSILON, relative_error


def frozen_bn_with_random_stats(epsilon, channels, seed=0):
    rng = np.random.default_rng(seed)
    stats = {
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.normal(0, 1, channels),
        "moving_mean": rng.normal(0, 2, channels),
        # tiny variances make epsilon matter: 1.001e-5 instead of 0 would change the output a lot
        "moving_variance": rng.uniform(1e-8, 1e-6, channels),
    }
    layer = FrozenBatchNormalization(epsilon=epsilon)
    layer.build((None, channels))
    for name, value in stats.items():
        getattr(layer, name).assign(value.astype(np.float32))
    return layer, {name: value.astype(np.float32).astype(np.float64) for name, value in stats.items()}


def frozen_bn_reference(x, stats, epsilon):
    scale = stats["gamma"] / np.sqrt(stats["moving_variance"] + epsilon)
    return x.astype(np.float64) * scale + (stats["beta"] - stats["moving_mean"] * scale)


@pytest.mark.parametrize("epsilon", [0.0, 1e-5])
def test_frozen_batch_norm_matches_float64_reference(epsilon):
    layer, stats = frozen_bn_with_random_stats(epsilon, channels=8)
    x = np.random.default_rng(1).normal(0, 2, (2, 5, 5, 8)).astype(np.float32)
    outputs = keras.ops.convert_to_numpy(layer(x))
    assert outputs.dtype == np.float32
    assert relative_error(outputs, frozen_bn_reference(x, stats, epsilon)) < 1e-6
    # the reference is epsilon-sensitive here, so a silently raised epsilon would fail the check above
    raised_epsilon = frozen_bn_reference(x, stats, KERAS_APPLICATIONS_EPSILON)
    assert relative_error(raised_epsilon, frozen_bn_reference(x, stats, 0.0)) > 0.5


def test_frozen_batch_norm_has_only_non_trainable_weights():
    layer, _ = frozen_bn_with_random_stats(0.0, channels=4)
    assert [w.name for w in layer.non_trainable_weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert layer.trainable_weights == []


def test_frozen_batch_norm_under_mixed_bfloat16(mixed_bfloat16):
    layer, stats = frozen_bn_with_random_stats(0.0, channels=8)
    assert all(w.dtype == "float32" for w in layer.weights)
    x = np.random.default_rng(1).normal(0, 2, (2, 5, 5, 8)).astype(np.float32)
    outputs = layer(x)
    assert outputs.dtype == "bfloat16"
    # input rounding to bfloat16 and output rounding: a few parts in 1e3
    expected = frozen_bn_reference(x, stats, 0.0)
    assert relative_error(keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")), expected) < 2e-2


def test_frozen_batch_norm_rejects_negative_epsilon():
    with pytest.raises(ValueError, match="-0.1"):
        FrozenBatchNormalization(epsilon=-0.1)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_frozen_batch_norm_feature_maps_and_gradients_match_the_affine(jit_compile):
    """Feature maps take the fused-op path (one inference-mode FusedBatchNormV3); vectors take the plain affine.
    Both give x * scale + shift, and the gradient of the input is the scale, with XLA too."""
    import tensorflow as tf

    layer, stats = frozen_bn_with_random_stats(0.0, channels=8)
    layer.moving_variance.assign(np.random.default_rng(2).uniform(0.5, 2.0, 8).astype(np.float32))
    stats["moving_variance"] = layer.moving_variance.numpy().astype(np.float64)
    x = tf.constant(np.random.default_rng(1).normal(0, 2, (2, 5, 5, 8)).astype(np.float32))

    @tf.function(jit_compile=jit_compile)
    def outputs_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x)
            weighted = tf.reduce_sum(outputs * tf.range(8, dtype=tf.float32))
        return outputs, tape.gradient(weighted, x)

    outputs, gradient = outputs_and_gradient(x)
    expected = frozen_bn_reference(x.numpy(), stats, 0.0)
    assert relative_error(outputs.numpy(), expected) < 1e-6
    assert relative_error(layer(tf.reshape(x, [-1, 8])).numpy().reshape(x.shape), expected) < 1e-6
    scale = stats["gamma"] / np.sqrt(stats["moving_variance"])
    assert relative_error(gradient.numpy(), np.broadcast_to(scale * np.arange(8), x.shape)) < 1e-6
