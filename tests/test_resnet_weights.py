"""Mapping keras.applications ImageNet ResNet weights into ResNetBackbone."""

import keras
import numpy as np
import pytest

from keras_retinanet.backbones import ResNetBackbone, load_keras_applications_weights
from backbone_testing import KERAS_APPLICATIONS_EPSILON, random_images, randomize_weights, relative_error


# keras.applications names of C3, C4, C5 for each depth.
SOURCE_FEATURES = {
    50: ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    101: ("conv3_block4_out", "conv4_block23_out", "conv5_block3_out"),
    152: ("conv3_block8_out", "conv4_block36_out", "conv5_block3_out"),
}
SOURCE_CONSTRUCTORS = {
    50: keras.applications.ResNet50,
    101: keras.applications.ResNet101,
    152: keras.applications.ResNet152,
}


def randomized_source(depth):
    source = SOURCE_CONSTRUCTORS[depth](include_top=False, weights=None)
    randomize_weights(source, seed=depth)
    return source


@pytest.fixture(scope="module")
def resnet50_source():
    return randomized_source(50)


def assert_transfer_matches(source, depth, normalization):
    backbone = ResNetBackbone(
        depth,
        normalization=normalization,
        bn_epsilon=KERAS_APPLICATIONS_EPSILON,
        preprocessing="caffe",
        frozen_stages=0,
    )
    load_keras_applications_weights(backbone, source)
    reference = keras.Model(source.input, [source.get_layer(name).output for name in SOURCE_FEATURES[depth]])
    images = random_images((1, 64, 64, 3))
    expected = reference(keras.applications.resnet.preprocess_input(images.copy()), training=False)
    actual = backbone(images, training=False)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert np.max(np.abs(e.numpy())) > 1.0  # not degenerate
        assert relative_error(a.numpy(), e.numpy()) <= 1e-5


@pytest.mark.parametrize("normalization", ["frozen_bn", "batch_norm"])
def test_keras_applications_resnet50_transfer(resnet50_source, normalization):
    assert_transfer_matches(resnet50_source, 50, normalization)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [101, 152])
@pytest.mark.parametrize("normalization", ["frozen_bn", "batch_norm"])
def test_keras_applications_deep_transfer(depth, normalization):
    assert_transfer_matches(randomized_source(depth), depth, normalization)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bn_epsilon": 1e-5}, "bn_epsilon=1.001e-05"),
        ({"stride_in_1x1": False}, "stride_in_1x1=True"),
        ({"preprocessing": "torch"}, 'preprocessing="caffe"'),
        ({"depth": 101}, "ResNet-50, the backbone a ResNet-101"),
        ({"depth": 18}, "depths \\[50, 101, 152\\]"),
    ],
)
def test_keras_applications_mismatch_raises(resnet50_source, kwargs, message):
    arguments = {"depth": 50, "bn_epsilon": KERAS_APPLICATIONS_EPSILON, "preprocessing": "caffe", **kwargs}
    backbone = ResNetBackbone(**arguments)
    with pytest.raises(ValueError, match=message):
        load_keras_applications_weights(backbone, resnet50_source)


def test_imagenet_weights_for_unsupported_depth_raise_before_download():
    with pytest.raises(ValueError, match="ResNet-18"):
        ResNetBackbone(18, preprocessing="caffe", weights="imagenet")
