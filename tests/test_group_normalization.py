"""GroupNormalization: float64-exact statistics."""

import numpy as np
import pytest


def test_group_normalization_matches_float64_statistics_and_round_trips():
    from keras_retinanet.layers import GroupNormalization

    rng = np.random.default_rng(0)
    inputs = (50.0 + 3.0 * rng.standard_normal((2, 40, 30, 64))).astype(np.float32)  # large mean, small spread
    layer = GroupNormalization(groups=32, epsilon=1e-5)
    layer.build(inputs.shape)
    gamma, beta = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    layer.set_weights([gamma, beta])
    grouped = inputs.astype(np.float64).reshape(2, 40, 30, 32, 2)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    variance = grouped.var(axis=(1, 2, 4), keepdims=True)
    expected = ((grouped - mean) / np.sqrt(variance + 1e-5)).reshape(inputs.shape) * gamma + beta
    np.testing.assert_allclose(layer(inputs).numpy(), expected, atol=2e-5)
    clone = GroupNormalization.from_config(layer.get_config())
    assert clone.groups == 32 and clone.epsilon == 1e-5
    with pytest.raises(ValueError, match="last axis only"):
        GroupNormalization(groups=4, axis=1)
