"""ResNetBackbone: architecture, stride placement, padding, frozen stages, serialisation."""

import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.backbones import ResNetBackbone, load_keras_applications_weights
from backbone_testing import random_images, randomize_weights, relative_error


@pytest.mark.parametrize(
    "depth, channels",
    [
        (18, (128, 256, 512)),
        (34, (128, 256, 512)),
        (50, (512, 1024, 2048)),
        (101, (512, 1024, 2048)),
        (152, (512, 1024, 2048)),
    ],
)
def test_output_shapes_and_channels(depth, channels):
    backbone = ResNetBackbone(depth, preprocessing=None)
    assert backbone.output_channels == channels
    for height, width in [(64, 64), (65, 97)]:
        features = backbone(random_images((1, height, width, 3)))
        expected = [(1, math.ceil(height / s), math.ceil(width / s), c) for s, c in zip((8, 16, 32), channels)]
        assert [tuple(f.shape) for f in features] == expected


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="42"):
        ResNetBackbone(42)
    with pytest.raises(ValueError, match="frozen_stages"):
        ResNetBackbone(18, frozen_stages=6)
    with pytest.raises(ValueError, match="group_norm"):
        ResNetBackbone(18, normalization="group_norm")
    with pytest.raises(ValueError, match="bogus"):
        ResNetBackbone(18, preprocessing="bogus")


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_placement(stride_in_1x1):
    backbone = ResNetBackbone(50, stride_in_1x1=stride_in_1x1, preprocessing=None)
    for stage in (3, 4, 5):
        first_1x1 = backbone.get_layer(f"conv{stage}_block1_1_conv")
        conv_3x3 = backbone.get_layer(f"conv{stage}_block1_2_conv")
        assert first_1x1.strides == ((2, 2) if stride_in_1x1 else (1, 1))
        assert conv_3x3.strides == ((1, 1) if stride_in_1x1 else (2, 2))
        assert backbone.get_layer(f"conv{stage}_block1_0_conv").strides == (2, 2)
    assert backbone.get_layer("conv2_block1_1_conv").strides == (1, 1)
    assert backbone.get_layer("conv2_block1_2_conv").strides == (1, 1)


def test_every_spatial_conv_is_symmetrically_padded():
    backbone = ResNetBackbone(50, stride_in_1x1=False, preprocessing=None)
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(conv.padding == "valid" and not conv.use_bias for conv in convs)
    for conv in convs:
        k = conv.kernel_size[0]
        if k > 1:
            padding = backbone.get_layer(conv.name.removesuffix("_conv") + "_pad").padding
            assert padding == ((k // 2, k // 2), (k // 2, k // 2)), conv.name
    assert backbone.get_layer("pool1_pad").padding == ((1, 1), (1, 1))


def test_stem_matches_symmetric_padding_reference():
    backbone = ResNetBackbone(18, preprocessing=None)
    stem = keras.Model(backbone.input, [backbone.get_layer(name).output for name in ("conv1_conv", "pool1_pool")])
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
    conv, pool = (keras.ops.convert_to_numpy(t) for t in stem(x))
    kernel = keras.ops.convert_to_numpy(backbone.get_layer("conv1_conv").kernel).astype(np.float64)

    # PyTorch Conv2d(7, stride=2, padding=3): pad 3 on every side, then a valid stride-2 conv -> 32x32
    padded = np.pad(x.astype(np.float64), ((0, 0), (3, 3), (3, 3), (0, 0)))
    expected_conv = sum(padded[:, i : i + 63 : 2, j : j + 63 : 2, :] @ kernel[i, j] for i in range(7) for j in range(7))
    assert relative_error(conv, expected_conv) < 1e-5

    # default frozen BN (gamma 1, beta 0, mean 0, var 1, eps 1e-5), ReLU, MaxPool2d(3, stride=2, padding=1) -> 16x16
    activations = np.pad(np.maximum(expected_conv / np.sqrt(1 + 1e-5), 0), ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = [activations[:, i : i + 31 : 2, j : j + 31 : 2, :] for i in range(3) for j in range(3)]
    expected_pool = np.max(windows, axis=0)
    assert relative_error(pool, expected_pool) < 1e-5

    # Keras/TF "same" pads (2, 3) on an even size: a shifted, different result
    same = tf.nn.conv2d(x, kernel.astype(np.float32), strides=2, padding="SAME").numpy()
    assert same.shape == conv.shape
    assert relative_error(same, expected_conv) > 0.1


def layer_stage(name):
    """detectron2 stage of a layer: conv1_* -> 1, conv{k}_* -> k."""
    return int(re.match(r"conv(\d)_", name).group(1))


@pytest.mark.parametrize("normalization, weights_per_conv", [("frozen_bn", 1), ("batch_norm", 3)])
@pytest.mark.parametrize("frozen_stages, trainable_convs", [(0, 20), (2, 15), (5, 0)])
def test_frozen_stages(normalization, weights_per_conv, frozen_stages, trainable_convs):
    backbone = ResNetBackbone(18, normalization=normalization, frozen_stages=frozen_stages, preprocessing=None)
    layers_with_weights = [layer for layer in backbone.layers if layer.weights]
    assert layers_with_weights
    for layer in layers_with_weights:
        assert layer.trainable == (layer_stage(layer.name) > frozen_stages), layer.name
    # R18: stem 1 conv, conv2_x 4, conv3_x..conv5_x 5 each (with the projection shortcut); BN adds gamma, beta
    assert len(backbone.trainable_weights) == trainable_convs * weights_per_conv


def test_frozen_batch_norm_stages_use_moving_statistics_in_training():
    backbone = ResNetBackbone(18, normalization="batch_norm", frozen_stages=5, preprocessing=None)
    randomize_weights(backbone, seed=0)
    images = random_images((2, 64, 64, 3))
    before = [w.numpy() for w in backbone.non_trainable_weights]
    training, inference = backbone(images, training=True), backbone(images, training=False)
    for a, b in zip(training, inference):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for old, new in zip(before, backbone.non_trainable_weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_backbone_under_mixed_bfloat16(mixed_bfloat16):
    backbone = ResNetBackbone(18)
    assert all(f.dtype == "bfloat16" for f in backbone(random_images((1, 64, 64, 3))))


def test_dtype_policy_is_saved_with_the_backbone():
    """Its layers are created in the constructor, so the policy is recorded and the clone rebuilt under it, whatever
    the global policy when it is loaded."""
    import keras

    from keras_retinanet.precision import dtype_policy_scope

    with dtype_policy_scope("mixed_bfloat16"):
        config = ResNetBackbone(18).get_config()
    assert config["dtype_policy"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    clone = ResNetBackbone.from_config(config)
    assert clone.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert clone.get_layer("conv1_conv").kernel.dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_config_round_trip():
    backbone = ResNetBackbone(
        18,
        stride_in_1x1=False,
        normalization="batch_norm",
        bn_epsilon=0.0,
        frozen_stages=3,
        preprocessing="caffe",
        name="r18",
    )
    config = backbone.get_config()
    assert config == {
        "depth": 18,
        "stride_in_1x1": False,
        "normalization": "batch_norm",
        "bn_epsilon": 0.0,
        "frozen_stages": 3,
        "preprocessing": "caffe",
        "weights": None,
        "width_multiplier": 1.0,
        "name": "r18",
        "dtype_policy": "float32",
        "trainable": True,
    }
    clone = ResNetBackbone.from_config(config)
    assert clone.get_config() == config
    assert [(w.path, w.shape, w.trainable) for w in clone.weights] == [
        (w.path, w.shape, w.trainable) for w in backbone.weights
    ]
    assert any(w.trainable for w in clone.weights) and not all(w.trainable for w in clone.weights)
    backbone.trainable = False  # frozen whole (train.freeze), kept so
    frozen = ResNetBackbone.from_config(backbone.get_config())
    assert not frozen.trainable and not any(w.trainable for w in frozen.weights)


@pytest.mark.parametrize("normalization", ["frozen_bn", "batch_norm"])
def test_keras_file_round_trip(tmp_path, normalization):
    backbone = ResNetBackbone(18, normalization=normalization, frozen_stages=1)
    randomize_weights(backbone, seed=1)
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, ResNetBackbone)
    assert loaded.get_config() == backbone.get_config()
    assert len(loaded.trainable_weights) == len(backbone.trainable_weights)
    images = random_images((1, 64, 64, 3))
    for a, b in zip(backbone(images), loaded(images)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_file_argument(tmp_path):
    backbone = ResNetBackbone(18)
    randomize_weights(backbone, seed=2)
    path = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(path)
    loaded = ResNetBackbone(18, weights=path)
    images = random_images((1, 64, 64, 3))
    for a, b in zip(backbone(images), loaded(images)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_width_multiplier_scales_every_conv():
    half = ResNetBackbone(18, width_multiplier=0.5, preprocessing=None)
    assert half.output_channels == (64, 128, 256)
    outputs = half(np.zeros((1, 64, 64, 3), np.float32))
    assert [o.shape[-1] for o in outputs] == [64, 128, 256]
    assert half.get_layer("conv1_conv").filters == 32
    full = ResNetBackbone(18, preprocessing=None)
    assert half.count_params() < full.count_params() / 3
    with pytest.raises(ValueError, match="width_multiplier must be > 0"):
        ResNetBackbone(18, width_multiplier=0.0)
    with pytest.raises(ValueError, match="width_multiplier=1.0"):
        load_keras_applications_weights(
            ResNetBackbone(50, width_multiplier=0.5, preprocessing="caffe"), source=object()
        )
