"""KerasApplicationsBackbone: taps found by stride, each application's own preprocessing, weights from Keras' download
cache or a file, frozen stages and norms, saving with safe_mode, and the config that builds it."""

import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from backbone_testing import random_images
from keras_retinanet.backbones import KerasApplicationsBackbone
from keras_retinanet.backbones.keras_applications import APPLICATIONS
from keras_retinanet.config import ConfigError, load_config
from keras_retinanet.errors import ModelError
from keras_retinanet.models import build_retinanet

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


def _application(name, **arguments):
    return getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(None, None, 3), **arguments)


def test_mobilenet_v2_taps_are_the_ssdlite_layers_at_strides_8_16_32_at_odd_sizes():
    """The taps SSDLite names by hand, found by stride; every side rounds up as the application's padding does."""
    backbone = KerasApplicationsBackbone("MobileNetV2", width_multiplier=0.35)
    assert backbone.taps == ("block_6_expand_relu", "block_13_expand_relu", "out_relu")
    for height, width in ((96, 128), (101, 67), (33, 250)):
        features = backbone(random_images((1, height, width, 3)))
        assert [tuple(f.shape[1:3]) for f in features] == [
            (math.ceil(height / s), math.ceil(width / s)) for s in (8, 16, 32)]
        assert [f.shape[-1] for f in features] == list(backbone.output_channels) == [96, 192, 1280]


@pytest.mark.parametrize("name, preprocess, arguments", [
    ("MobileNetV2", keras.applications.mobilenet_v2.preprocess_input, {"alpha": 0.35}),  # [-1, 1], ours in front
    ("EfficientNetV2B0", lambda images: images, {}),  # [0, 255]: the application normalises itself
])
def test_the_input_is_what_the_applications_weights_expect(name, preprocess, arguments, tmp_path):
    """Ours on [0, 255] RGB gives the application's C5 on its own preprocessing, from the application's weights file."""
    application = _application(name, **arguments)
    path = str(tmp_path / "application.weights.h5")
    application.save_weights(path)
    backbone = KerasApplicationsBackbone(name, weights=path, width_multiplier=arguments.get("alpha", 1.0))
    images = random_images((2, 64, 96, 3))
    expected = application(preprocess(images.copy()), training=False)
    np.testing.assert_allclose(backbone(images)[2], expected, rtol=1e-4, atol=1e-4)


def test_frozen_stages_and_frozen_norms():
    backbone = KerasApplicationsBackbone("MobileNetV2", width_multiplier=0.35, frozen_stages=3,
                                         normalization="frozen_bn")
    layers = backbone.get_layer("MobileNetV2_features").layers
    c3 = [layer.name for layer in layers].index("block_6_expand_relu")
    weighted = [(index, layer) for index, layer in enumerate(layers) if layer.weights]
    assert all(not layer.trainable for index, layer in weighted if index <= c3)
    assert all(layer.trainable != isinstance(layer, keras.layers.BatchNormalization)
               for index, layer in weighted if index > c3)
    images = random_images((2, 64, 64, 3))  # frozen norms: training mode computes what inference does
    for trained, inferred in zip(backbone(images, training=True), backbone(images, training=False)):
        np.testing.assert_allclose(trained, inferred, rtol=1e-5, atol=1e-5)
    learning = KerasApplicationsBackbone("MobileNetV2", width_multiplier=0.35, normalization="batch_norm")
    assert all(layer.trainable for layer in learning.get_layer("MobileNetV2_features").layers)


def test_trainable_norms_follow_the_features_as_our_resnets_do():
    """MobileNetV2 builds its norms with momentum 0.999: from scratch, the demo's 800 steps left their moving
    statistics far from the features (AP 0 at inference). Trainable ones get our ResNet's 0.99, also when rebuilt
    from the config; frozen ones keep the application's (they never update)."""
    def momenta(backbone):
        return {layer.momentum for layer in backbone.get_layer("MobileNetV2_features").layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    learning = KerasApplicationsBackbone("MobileNetV2", width_multiplier=0.35, normalization="batch_norm")
    assert momenta(learning) == momenta(KerasApplicationsBackbone.from_config(learning.get_config())) == {0.99}
    assert momenta(KerasApplicationsBackbone("MobileNetV2", width_multiplier=0.35)) == {0.999}


def test_imagenet_weights_come_from_keras_download_and_offline_is_one_clear_error(monkeypatch):
    def offline(*arguments, **keywords):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -3] name resolution")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", offline)
    with pytest.raises(ModelError, match=r"MobileNetV2: Keras could not download its ImageNet weights \(offline\?"):
        KerasApplicationsBackbone("MobileNetV2", weights="imagenet")
    with pytest.raises(ModelError, match="its weights file /no/such.weights.h5 does not load"):
        KerasApplicationsBackbone("MobileNetV2", weights="/no/such.weights.h5")


@pytest.mark.slow
def test_imagenet_weights_load_from_the_keras_cache_in_a_fresh_process(tmp_path):
    """`weights: imagenet` takes the file Keras' download leaves in KERAS_HOME/models, as on a machine that has it."""
    application = _application("MobileNetV2", alpha=0.35)
    os.makedirs(tmp_path / "models")
    # The name keras.applications downloads (its legacy H5 format: a whole model's file loads as weights too).
    application.save(str(tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"))
    expected = application(keras.applications.mobilenet_v2.preprocess_input(random_images((1, 64, 64, 3))))
    script = ("import numpy as np; from backbone_testing import random_images; "
              "from keras_retinanet.backbones import KerasApplicationsBackbone; "
              "b = KerasApplicationsBackbone('MobileNetV2', weights='imagenet', width_multiplier=0.35); "
              f"np.save({str(tmp_path / 'c5.npy')!r}, b(random_images((1, 64, 64, 3)))[2])")
    environment = {**os.environ, "KERAS_HOME": str(tmp_path),
                   "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "c5.npy"), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_every_application_gives_c3_c4_c5_at_strides_8_16_32(name):
    features = KerasApplicationsBackbone(name, normalization="batch_norm")(random_images((1, 64, 96, 3)))
    assert [tuple(f.shape[1:3]) for f in features] == [(8, 12), (4, 6), (2, 3)]


def test_a_mobile_detector_saves_and_loads_with_safe_mode(tmp_path):
    config = load_config(os.path.join(CONFIGS, "mobile_demo.yaml"), ["model.backbone.width_multiplier=0.35"])
    model = build_retinanet(config.model, num_classes=3)
    images = random_images((1, 96, 128, 3))
    outputs = model(images)
    model.save(str(tmp_path / "mobile.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "mobile.keras"), safe_mode=True)
    assert isinstance(loaded.backbone, KerasApplicationsBackbone) and loaded.backbone.width_multiplier == 0.35
    assert loaded.feature_pyramid.separable and loaded.classification_head.separable
    for key in ("class_logits", "box_deltas"):
        np.testing.assert_array_equal(loaded(images)[key], outputs[key])


@pytest.mark.parametrize("overrides, message", [
    (["model.backbone.type=keras_applications"], "needs the application's name"),
    (["model.backbone.type=keras_applications", "model.backbone.name=MobileNetV9"], "must be one of"),
    (["model.backbone.type=keras_applications", "model.backbone.name=MobileNetV2", "model.backbone.depth=18"],
     r"'model.backbone.depth' does not apply to type 'keras_applications'"),
    (["model.backbone.type=keras_applications", "model.backbone.name=EfficientNetV2B0",
      "model.backbone.width_multiplier=0.5"], "only MobileNet, MobileNetV2 and MobileNetV3 have a width multiplier"),
    (["model.backbone.name=MobileNetV2"], r"'model.backbone.name' does not apply to type 'resnet'"),
])
def test_backbone_settings_that_do_not_go_together_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_the_mobile_configs_build_mobilenet_v2_with_separable_heads():
    config = load_config(os.path.join(CONFIGS, "mobile_320.yaml"))
    assert (config.model.backbone.type, config.model.backbone.name, config.model.backbone.weights) == (
        "keras_applications", "MobileNetV2", "imagenet")
    assert config.model.heads.separable and config.model.pyramid.separable and config.data.min_size == 320
    demo = load_config(os.path.join(CONFIGS, "mobile_demo.yaml"))
    assert demo.model.backbone.weights is None and demo.model.backbone.normalization == "batch_norm"
