"""Experiment configs: shipped files parse, unknown keys and wrong types are named, overrides, round trip, base
files, old setting names."""

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
    focal_loss = config.model.classification_loss
    assert (focal_loss.alpha, focal_loss.gamma, config.model.heads.prior_probability) == (0.25, 2.0, 0.01)
    r101 = load_config(os.path.join(CONFIG_DIR, "retinanet_r101_fpn_1x_coco.yaml"))
    assert r101.model.backbone.depth == 101 and r101.train == config.train and r101.data == config.data
    ablation = load_config(os.path.join(CONFIG_DIR, "retinanet_r50_fpn_600_ablation_coco.yaml"))
    assert (ablation.data.min_size, ablation.data.max_size) == (600, 1000)
    assert ablation.data.train == config.data.train and ablation.model == config.model


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
        ("train:\n  batch_size: 2.5e0\n", "'train.batch_size' must be an integer, got '2.5e0'"),
        ("data:\n  horizontal_flip: 'yes'\n", "'data.horizontal_flip' must be true or false"),
        ("train:\n  lr_steps: 60000\n", "'train.lr_steps' must be a list"),
        ("train:\n  lr_steps: [60000, x]\n", r"'train.lr_steps\[1\]' must be an integer"),
        ("data:\n  scale_jitter: [0.8]\n", "'data.scale_jitter' must have 2 items"),
        ("model:\n  box_loss: {type: huber}\n", r"'model.box_loss.type' must be one of \('smooth_l1', 'l1', 'giou'\)"),
        ("model:\n  box_loss: huber\n", "'model.box_loss.type' must be one of"),
        ("data:\n  resize_rule: opencv\n", r"'data.resize_rule' must be one of \('detectron', 'torchvision'\)"),
        ("model:\n  heads: {normalization: batch_norm}\n", "'model.heads.normalization' must be one of"),
        ("model: 3\n", "'model' must be a mapping"),
        ("data:\n  size_divisor: 0\n", r"'data.size_divisor' must be in \[1, 1024\], got 0"),
        ("- 1\n", r"experiment.yaml: not a YAML mapping of sections \(the top level is a list\)"),
    ],
)
def test_wrong_types_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_integers_may_be_written_in_scientific_notation(tmp_path):
    """As the README writes 50e6: YAML reads `1e9` as text and `5.0e+7` as a float; both are integers here."""
    config = load_config(_write(tmp_path, "data:\n  max_image_pixels: 5.0e+7\n"),
                         ["data.max_image_pixels=1e9", "train.iterations=9E4"])
    assert config.data.max_image_pixels == 10**9 and config.train.iterations == 90000
    assert load_config(_write(tmp_path, "data:\n  max_image_pixels: 5.0e+7\n")).data.max_image_pixels == 5 * 10**7


def test_floats_may_be_written_as_yaml_1_1_reads_them_as_text(tmp_path):
    """`1e-5` (no dot) is text to PyYAML; it is the number here, as bin/convert_torchvision prints it."""
    config = load_config(_write(tmp_path, "model:\n  backbone: {bn_epsilon: 1e-5, weights: null}\n"),
                         ["model.box_loss_weight=2E0"])
    assert config.model.backbone.bn_epsilon == 1e-5 and config.model.box_loss_weight == 2.0
    with pytest.raises(ConfigError, match="'model.box_loss_weight' must be a number, got '1e-5x'"):
        load_config(None, ["model.box_loss_weight=1e-5x"])


def test_overrides(tmp_path):
    path = _write(tmp_path, "train:\n  batch_size: 4\n")
    config = load_config(path, ["train.batch_size=8", "model.backbone.weights=null", "data.val.images=/x/val",
                                "train.lr_steps=[10, 20]", "model.classification_loss.gamma=0"])
    assert config.train.batch_size == 8 and config.model.backbone.weights is None
    assert config.data.val.images == "/x/val" and config.train.lr_steps == (10, 20)
    assert config.model.classification_loss.gamma == 0.0 and isinstance(config.model.classification_loss.gamma, float)
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
    config = load_config(None, ["model.backbone.depth=18", "model.backbone.weights=null", "model.heads.filters=32",
                                "model.pyramid.filters=32", "model.heads.num_convs=1", "model.box_loss.type=giou",
                                "model.heads.normalization=group_norm", "model.decoder.max_detections=7",
                                "model.decoder.iou_threshold=0.6", "model.ignore_region_threshold=0.7"])
    model = build_retinanet(config.model, num_classes=4)
    assert model.backbone.depth == 18 and model.num_classes == 4
    assert model.classification_head.normalization == "group_norm" and not model.box_head.use_bias
    assert type(model.box_loss).__name__ == "GIoULoss" and model.decoder.max_detections == 7
    assert model.decoder.iou_threshold == 0.6
    assert model.labeler.ignore_region_threshold == 0.7 and model.get_config()["ignore_region_threshold"] == 0.7


def test_old_setting_names_are_read():
    """Names of earlier releases, in files, overrides and the configs stored in saved models."""
    old = load_config(None, [
        "model.head_filters=32", "model.head_convs=1", "model.head_normalization=group_norm", "model.p6_input=p5",
        "model.prior_probability=0.02", "model.pyramid_filters=64", "model.positive_threshold=0.6",
        "model.negative_threshold=0.3", "model.allow_low_quality_matches=false", "model.focal_alpha=0.5",
        "model.focal_gamma=1.0", "model.box_loss=smooth_l1", "model.smooth_l1_beta=0.2",
        "model.score_threshold=0.1", "model.pre_nms_top_k=500", "model.nms_iou_threshold=0.6",
        "model.max_detections=50", "data.preprocessing=torchvision",
    ])
    new = load_config(None, [
        "model.heads.filters=32", "model.heads.num_convs=1", "model.heads.normalization=group_norm",
        "model.pyramid.p6_input=p5", "model.heads.prior_probability=0.02", "model.pyramid.filters=64",
        "model.matcher.positive_threshold=0.6", "model.matcher.negative_threshold=0.3",
        "model.matcher.allow_low_quality_matches=false", "model.classification_loss.alpha=0.5",
        "model.classification_loss.gamma=1.0",
        "model.box_loss.type=smooth_l1", "model.box_loss.beta=0.2", "model.decoder.score_threshold=0.1",
        "model.decoder.pre_nms_top_k=500", "model.decoder.iou_threshold=0.6", "model.decoder.max_detections=50",
        "data.resize_rule=torchvision",
    ])
    assert old == new and new != ExperimentConfig()
    same = "'model.focal_gamma' and 'model.classification_loss.gamma' are the same setting"
    with pytest.raises(ConfigError, match=same):
        load_config(None, ["model.focal_gamma=1.0", "model.classification_loss.gamma=2.0"])


def test_a_config_starts_from_its_base_file(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  backbone: {depth: 18, weights: null}\ntrain: {batch_size: 4}\n")
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("base: ../base.yaml\nmodel:\n  backbone: {depth: 34}\n")
    config = load_config(str(child), ["train.iterations=10"])
    assert config.model.backbone.depth == 34 and config.model.backbone.weights is None
    assert (config.train.batch_size, config.train.iterations) == (4, 10)
    (tmp_path / "base.yaml").write_text("base: sub/child.yaml\n")
    with pytest.raises(ConfigError, match="'base' files form a cycle"):
        load_config(str(child))
    child.write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"child.yaml: cannot read config file .*missing.yaml"):
        load_config(str(child))
