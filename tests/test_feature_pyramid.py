"""FeaturePyramid: P3-P7 sizes on odd inputs, P6 from C5 or P5, PyTorch-style nearest upsampling."""

import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.layers import FeaturePyramid
from keras_retinanet.layers.feature_pyramid import upsample_nearest
from layer_testing import pyramid_features


def test_pyramid_shapes_on_odd_sizes():
    pyramid = FeaturePyramid(filters=16)
    outputs = pyramid(pyramid_features(200, 328))
    assert [tuple(o.shape) for o in outputs] == [
        (2, 25, 41, 16), (2, 13, 21, 16), (2, 7, 11, 16), (2, 4, 6, 16), (2, 2, 3, 16)
    ]


def test_p6_from_c5_or_p5():
    features = pyramid_features(64, 64)
    from_c5 = FeaturePyramid(filters=16, p6_input="c5")
    from_p5 = FeaturePyramid(filters=16, p6_input="p5")
    from_c5(features), from_p5(features)
    assert from_c5.p6_conv.kernel.shape == (3, 3, 16, 16)  # C5 has 16 channels here too: compare values instead
    from_p5.set_weights(from_c5.get_weights())
    c5_out, p5_out = from_c5(features), from_p5(features)
    np.testing.assert_allclose(c5_out[2], p5_out[2], rtol=1e-6)  # P5 identical
    assert not np.allclose(c5_out[3], p5_out[3])  # P6 differs
    # P6 = conv3x3/s2 (symmetric padding 1) of C5.
    expected = tf.nn.conv2d(features[2], from_c5.p6_conv.kernel, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])
    np.testing.assert_allclose(c5_out[3], expected + from_c5.p6_conv.bias, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="p6_input"):
        FeaturePyramid(p6_input="c4")


def test_upsampling_follows_pytorch_nearest():
    x = np.arange(13 * 7, dtype=np.float32).reshape(1, 13, 7, 1)
    out = upsample_nearest(tf.constant(x), tf.constant([25, 13])).numpy()
    rows = (np.arange(25) * 13) // 25
    cols = (np.arange(13) * 7) // 13
    np.testing.assert_array_equal(out[0, :, :, 0], x[0, rows][:, cols, 0])


def test_a_separable_pyramid_starts_at_the_full_pyramids_scale():
    """Keras' default depthwise weights would shrink each separable 3x3 output by about the channel count."""
    import keras

    features = pyramid_features(64, 96)
    spreads = {}
    for separable in (False, True):
        keras.utils.set_random_seed(0)
        spreads[separable] = [float(np.std(p)) for p in FeaturePyramid(filters=64, separable=separable)(features)]
    for full, separable in zip(spreads[False], spreads[True]):
        assert 0.5 < separable / full < 2, spreads
