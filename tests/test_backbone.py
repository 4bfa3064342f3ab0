"""ResNet backbone, frozen batch norm, image normalization and the keras.applications weight mapping."""

import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.backbones import ResNetBackbone, load_keras_applications_weights
from keras_retinanet.layers import FrozenBatchNormalization, ImageNormalization

KERAS_APPLICATIONS_EPSILON = 1.001e-5
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


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


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


# --- FrozenBatchNormalization -------------------------------------------------------------------


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


# --- ImageNormalization -------------------------------------------------------------------------


def test_caffe_preset_matches_keras_applications_preprocessing():
    images = random_images((2, 6, 7, 3))
    expected = keras.applications.resnet.preprocess_input(images.copy())
    outputs = ImageNormalization.preset("caffe")(images)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs), expected, rtol=0, atol=1e-4)


def test_torch_preset_matches_torchvision_normalization():
    images = np.random.default_rng(0).integers(0, 256, (2, 6, 7, 3), dtype=np.uint8)
    expected = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    outputs = ImageNormalization.preset("torch")(images)
    assert outputs.dtype == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs), expected, rtol=0, atol=1e-5)


def test_image_normalization_under_mixed_bfloat16(mixed_bfloat16):
    assert ImageNormalization.preset("torch")(random_images((1, 4, 4, 3))).dtype == "bfloat16"


def test_image_normalization_validates_arguments():
    with pytest.raises(ValueError, match="preset"):
        ImageNormalization.preset("tf")
    with pytest.raises(ValueError, match="std"):
        ImageNormalization(mean=(0, 0, 0), std=(1, 0, 1))
    with pytest.raises(ValueError, match="3 values"):
        ImageNormalization(mean=(0, 0), std=(1, 1, 1))


# --- ResNetBackbone: architecture ---------------------------------------------------------------


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
    with pytest.raises(ValueError, match="'tf'"):
        ResNetBackbone(18, preprocessing="tf")


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


# --- keras.applications weight mapping ----------------------------------------------------------


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


# --- serialization ------------------------------------------------------------------------------


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
    }
    clone = ResNetBackbone.from_config(config)
    assert clone.get_config() == config
    assert [(w.path, w.shape, w.trainable) for w in clone.weights] == [
        (w.path, w.shape, w.trainable) for w in backbone.weights
    ]


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
