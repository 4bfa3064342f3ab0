"""Experiment configs: shipped files parse, unknown keys and wrong types are named, overrides, round trip."""

import glob
import os

import pytest

from keras_retinanet.config import ConfigError, ExperimentConfig, dump_config, load_config
from keras_retinanet.models import build_retinanet

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))))
def test_shipped_configs_parse(path):
    config = load_config(path)
    assert config.data.train.annotations and config.data.val.images
    assert all(step < config.train.iterations for step in config.train.lr_steps)
    assert config.train.eval_every % config.train.checkpoint_every == 0
    if "coco" in os.path.basename(path):
        assert config.train.lr_steps == (60000, 80000) and config.train.batch_size == 16


def test_paper_settings():
    config = load_config(os.path.join(CONFIG_DIR, "retinanet_r50_fpn_1x_coco.yaml"))
    assert (config.data.min_size, config.data.max_size, config.data.horizontal_flip) == (800, 1333, True)
    assert (config.train.iterations, config.train.learning_rate, config.train.warmup_iterations) == (90000, 0.01, 500)
    assert (config.model.focal_alpha, config.model.focal_gamma, config.model.prior_probability) == (0.25, 2.0, 0.01)
    assert load_config(os.path.join(CONFIG_DIR, "retinanet_r101_fpn_1x_coco.yaml")).model.backbone.depth == 101
    assert load_config(os.path.join(CONFIG_DIR, "retinanet_r50_fpn_600_ablation_coco.yaml")).data.min_size == 600


def _write(tmp_path, text):
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, "model:\n  backbone:\n    dept: 50\n")
    with pytest.raises(ConfigError, match=r"experiment.yaml: unknown key 'model.backbone.dept'"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(_write(tmp_path, "trian: {}\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  batch_size: 2.5\n", "'train.batch_size' must be an integer, got 2.5"),
        ("train:\n  batch_size: true\n", "'train.batch_size' must be an integer"),
        ("data:\n  horizontal_flip: 'yes'\n", "'data.horizontal_flip' must be true or false"),
        ("train:\n  lr_steps: 60000\n", "'train.lr_steps' must be a list"),
        ("train:\n  lr_steps: [60000, x]\n", r"'train.lr_steps\[1\]' must be an integer"),
        ("data:\n  scale_jitter: [0.8]\n", "'data.scale_jitter' must have 2 items"),
        ("model:\n  box_loss: huber\n", "'model.box_loss' must be one of"),
        ("model: 3\n", "'model' must be a mapping"),
        ("data:\n  size_divisor: 0\n", "'data.size_divisor' must be positive, got 0"),
        ("- 1\n", "top level must be a mapping"),
    ],
)
def test_wrong_types_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_overrides(tmp_path):
    path = _write(tmp_path, "train:\n  batch_size: 4\n")
    config = load_config(path, ["train.batch_size=8", "model.backbone.weights=null", "data.val.images=/x/val",
                                "train.lr_steps=[10, 20]", "model.focal_gamma=0"])
    assert config.train.batch_size == 8 and config.model.backbone.weights is None
    assert config.data.val.images == "/x/val" and config.train.lr_steps == (10, 20)
    assert config.model.focal_gamma == 0.0 and isinstance(config.model.focal_gamma, float)
    with pytest.raises(ConfigError, match="unknown key 'train.batch'"):
        load_config(path, ["train.batch=8"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(path, ["train.batch_size"])


def test_dump_and_load_round_trip(tmp_path):
    config = load_config(None, ["model.anchors.sizes=[16, 32, 64, 128, 256]", "data.scale_jitter=[0.8, 1.2]"])
    path = str(tmp_path / "resolved.yaml")
    dump_config(config, path)
    assert load_config(path) == config
    assert load_config(None) == ExperimentConfig()


def test_build_model_from_config():
    config = load_config(None, ["model.backbone.depth=18", "model.backbone.weights=null", "model.head_filters=32",
                                "model.pyramid_filters=32", "model.head_convs=1", "model.box_loss=giou",
                                "model.head_normalization=group_norm", "model.max_detections=7"])
    model = build_retinanet(config.model, num_classes=4)
    assert model.backbone.depth == 18 and model.num_classes == 4
    assert model.classification_head.normalization == "group_norm" and not model.box_head.use_bias
    assert type(model.box_loss).__name__ == "GIoULoss" and model.decoder.max_detections == 7
