"""RetinaNetHead: prior initialisation, output layout, weights shared across levels, GroupNorm."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.layers import RetinaNetHead


@pytest.mark.parametrize("separable", [False, True])
def test_head_initialisation_and_output_layout(separable):
    """The prior, normal(0.01) kernels (a separable conv's: normal(1/3) depthwise, normal(0.03) pointwise) and the
    anchor layout, in both forms."""
    head = RetinaNetHead(5, num_anchors=9, filters=32, num_convs=4, prior_probability=0.01, separable=separable)
    features = [np.random.default_rng(1).normal(size=(1, s, s, 32)).astype(np.float32) for s in (8, 4, 2)]
    logits = head(features).numpy()
    assert logits.shape == (1, (64 + 16 + 4) * 9, 5)
    np.testing.assert_allclose(head.output_conv.bias.numpy(), -math.log(99), rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), 0.01, atol=0.002)  # every anchor starts at the prior
    for conv in head.hidden_convs + [head.output_conv]:
        kernel = conv.pointwise_kernel if separable else conv.kernel
        assert kernel.shape[:2] == ((1, 1) if separable else (3, 3))
        stddev, tolerance = (0.03, 0.006) if separable else (0.01, 0.002)
        assert abs(np.std(kernel.numpy()) - stddev) < tolerance
        if separable:
            assert abs(np.std(conv.depthwise_kernel.numpy()) - 1 / 3) < 0.05
    # Layout: the output of level 0 at (y, x) is rows (y * 8 + x) * 9 ... + 9 of the flattened tensor.
    raw = head.output_conv(_hidden(head, features[0])).numpy().reshape(1, 8, 8, 9, 5)
    np.testing.assert_allclose(logits[0, (3 * 8 + 2) * 9 : (3 * 8 + 3) * 9], raw[0, 3, 2], rtol=1e-5)


def _hidden(head, x):
    for conv in head.hidden_convs:
        x = tf.nn.relu(conv(x))
    return x


def test_head_shares_weights_across_levels_and_group_norm_option():
    head = RetinaNetHead(4, num_anchors=9, filters=32, normalization="group_norm", groups=8, use_bias=False)
    head([np.zeros((1, 4, 4, 32), np.float32), np.zeros((1, 2, 2, 32), np.float32)])
    # 4 convs without bias + 4 GroupNorms (gamma, beta) + the output conv (kernel, bias), whatever the levels.
    assert len(head.weights) == 4 + 4 * 2 + 2
    assert head.norms[0].epsilon == 1e-5 and head.norms[0].groups == 8
    with pytest.raises(ValueError, match="normalization"):
        RetinaNetHead(4, normalization="batch_norm")


@pytest.mark.parametrize("channels", [32, 128])
def test_separable_hidden_convs_start_at_the_full_convs_scale(channels):
    """Keras' default depthwise weights shrink each separable conv's output by about the channel count; ours keep
    the paper's head scale, so the four hidden layers and their gradients are those of the full head."""
    features = [np.random.default_rng(2).normal(size=(2, 16, 16, channels)).astype(np.float32)]
    spreads = {}
    for separable in (False, True):
        keras.utils.set_random_seed(0)
        head = RetinaNetHead(3, num_anchors=9, filters=channels, num_convs=4, separable=separable)
        head(features)
        spreads[separable] = float(np.std(_hidden(head, features[0]).numpy()))
    assert 0.5 < spreads[True] / spreads[False] < 2, spreads
