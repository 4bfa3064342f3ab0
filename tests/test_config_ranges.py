"""Every setting's range and every relation between settings is checked as the config is read, in files and
`--set` overrides alike, with one line naming the file and the dotted key; files that are no config (deep nesting,
another file's text, bytes) are named, never quoted."""

import dataclasses
import os
import subprocess
import sys
import types
import typing

import pytest
import yaml

from keras_retinanet.config import ConfigError, ExperimentConfig, load_config, nested

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

# Values out of each number's or tuple's limits (those of the component that takes it). Every numeric and tuple field
# needs one here: `test_every_numeric_or_tuple_setting_has_a_bad_value_case` fails on a field without.
BAD_VALUES = {
    "model.backbone.depth": [17],
    "model.backbone.bn_epsilon": [-1e-5],
    "model.backbone.frozen_stages": [-1, 6],
    "model.backbone.width_multiplier": [0, -0.5, 17],
    "model.anchors.sizes": [[16, 32, 64, 128, 0]],
    "model.anchors.scales": [[1.0, -1.0]],
    "model.anchors.aspect_ratios": [[-0.5, 1.0], [0]],
    "model.pyramid.filters": [0, 2**31, 4097],
    "model.heads.filters": [0, 4097],
    "model.heads.num_convs": [-1, 33],
    "model.heads.prior_probability": [0, 1],
    "model.matcher.positive_threshold": [1.5, -0.1],
    "model.matcher.negative_threshold": [-0.1],
    "model.classification_loss.alpha": [1.5, -0.25],
    "model.classification_loss.gamma": [-1],
    "model.classification_loss.beta": [float("nan"), float("inf")],
    "model.classification_loss.batch_size_per_image": [0],
    "model.classification_loss.positive_fraction": [0, 1.5],
    "model.classification_loss.nms_iou_threshold": [0, 1.1],
    "model.box_loss.beta": [-0.1],
    "model.box_loss_weight": [-1],
    "model.ignore_region_threshold": [0, 1.5],
    "model.decoder.score_threshold": [-1, 1],
    "model.decoder.pre_nms_top_k": [0, 100001],
    "model.decoder.iou_threshold": [5, 0],
    "model.decoder.max_detections": [0, 100001],
    "model.decoder.min_box_size": [0, -1],
    "model.init_components": [["head"], ["backbone", "backbone"], []],
    "data.min_size": [0, 8193],
    "data.max_size": [-1, 8193],
    "data.scale_jitter": [[2, -0.5], [0, 1]],
    "data.max_boxes": [0, 100001],
    "data.seed": [-1, 2**32],
    "data.size_divisor": [0, 1025],
    "data.max_image_pixels": [0],
    "data.augmentation": [[{"type": "zoom_out", "ratio": [0.5, 2]}], [{"type": "iou_crop", "min_ious": [-0.1]}],
                          [{"type": "photometric", "hue": [0, 0.6]}], [{"type": "mosaic"}], "horizontal_flip"],
    "train.batch_size": [0],
    "train.iterations": [0],
    "train.learning_rate": [0, -0.01],
    "train.lr_steps": [[-5], [0, 10]],
    "train.lr_decay": [0, 2],
    "train.warmup_iterations": [-1],
    "train.warmup_factor": [-0.5, 2],
    "train.momentum": [1.5, -0.1],
    "train.weight_decay": [-1e-4],
    "train.checkpoint_every": [0],
    "train.eval_every": [0],
    "train.clip_norm": [0, -1],
    "train.freeze": [["head"], ["backbone", "backbone"], "backbone"],
}

# Settings that are each in range but do not go together: (settings, the keys the message names).
BAD_RELATIONS = [
    ({"model.anchors.sizes": [16, 32, 64, 128]}, ["model.anchors.sizes"]),
    ({"model.anchors.scales": []}, ["model.anchors.scales"]),
    ({"model.anchors.aspect_ratios": []}, ["model.anchors.aspect_ratios"]),
    ({"model.matcher.positive_threshold": 0.3},
     ["model.matcher.negative_threshold", "model.matcher.positive_threshold"]),
    ({"model.classification_loss.type": "focal_star", "model.classification_loss.alpha": None,
      "model.classification_loss.gamma": 0}, ["model.classification_loss.gamma"]),
    ({"model.classification_loss.type": "ohem", "model.classification_loss.gamma": 1},
     ["model.classification_loss.gamma"]),
    ({"model.box_loss.type": "giou", "model.box_loss.beta": 0.5}, ["model.box_loss.beta"]),
    ({"model.heads.normalization": "group_norm", "model.heads.filters": 48}, ["model.heads.filters"]),
    ({"model.backbone.depth": 18}, ["model.backbone.weights", "model.backbone.depth"]),
    ({"model.backbone.width_multiplier": 0.5}, ["model.backbone.weights", "model.backbone.width_multiplier"]),
    ({"model.backbone.preprocessing": "torch"}, ["model.backbone.preprocessing"]),
    ({"model.init_components": ["backbone"]}, ["model.init_components", "model.init_from"]),
    ({"data.min_size": 1400}, ["data.min_size", "data.max_size"]),
    ({"data.scale_jitter": [1.2, 0.8]}, ["data.scale_jitter"]),
    ({"data.augmentation": [{"type": "resize", "scale": [1.2, 0.8]}]}, ["data.augmentation[0].scale"]),
    ({"data.augmentation": [{"type": "iou_crop", "min_ious": []}]}, ["data.augmentation[0].min_ious"]),
    ({"data.augmentation": [], "data.scale_jitter": [0.8, 1.2]}, ["data.augmentation", "data.scale_jitter"]),
    ({"data.augmentation": [{"type": "horizontal_flip"}], "data.horizontal_flip": False},
     ["data.augmentation", "data.horizontal_flip"]),
    ({"train.eval_every": 7500}, ["train.eval_every", "train.checkpoint_every"]),
    ({"train.lr_steps": [80000, 60000]}, ["train.lr_steps"]),
    ({"train.lr_steps": [60000, 60000]}, ["train.lr_steps"]),
]


def _numeric_or_tuple_keys(cls, prefix=""):
    """The dotted keys of the int, float and tuple fields (optional ones included) under dataclass `cls`."""
    for field in dataclasses.fields(cls):
        field_type = typing.get_type_hints(cls)[field.name]
        if dataclasses.is_dataclass(field_type):
            yield from _numeric_or_tuple_keys(field_type, f"{prefix}{field.name}.")
            continue
        if typing.get_origin(field_type) in (typing.Union, types.UnionType):
            (field_type,) = [argument for argument in typing.get_args(field_type) if argument is not type(None)]
        if field_type in (int, float) or typing.get_origin(field_type) is tuple:
            yield prefix + field.name


def test_every_numeric_or_tuple_setting_has_a_bad_value_case():
    keys = set(_numeric_or_tuple_keys(ExperimentConfig))
    assert keys - set(BAD_VALUES) == set(), "settings without a bad-value case: give them a range and a case"
    assert set(BAD_VALUES) - keys == set()


def _assert_names_file_and_keys(error, path, keys):
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for key in keys:
        assert f"'{key}" in message, message


@pytest.mark.parametrize("key, value", [(key, value) for key, values in BAD_VALUES.items() for value in values])
def test_values_out_of_range_are_named_in_files_and_overrides(tmp_path, key, value):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(nested({key: value})))
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    _assert_names_file_and_keys(error, path, [key])

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError) as error:
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        load_config(str(empty), [f"{key}={text}"])
    _assert_names_file_and_keys(error, empty, [key])


@pytest.mark.parametrize("settings, keys", BAD_RELATIONS)
def test_settings_that_do_not_go_together_are_named(tmp_path, settings, keys):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(nested(settings)))
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    _assert_names_file_and_keys(error, path, keys)


def test_the_paper_settings_and_their_edges_are_accepted():
    """The limits are the components' own: their end values still load."""
    config = load_config(None, [
        "model.backbone.weights=null", "model.backbone.depth=18", "model.backbone.frozen_stages=5",
        "model.heads.num_convs=0", "model.matcher.negative_threshold=0.5", "model.classification_loss.gamma=0",
        "model.decoder.score_threshold=0", "model.decoder.iou_threshold=1", "train.lr_steps=[]",
        "train.warmup_iterations=0", "train.momentum=0", "data.seed=4294967295", "data.min_size=1333",
        "model.heads.normalization=group_norm", "model.heads.filters=64", "model.box_loss.type=giou",
    ])
    assert config.model.heads.num_convs == 0 and config.train.lr_steps == () and config.data.seed == 2**32 - 1


def test_a_base_file_that_is_no_config_is_named_never_quoted(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\nsecret-token-1234\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {secret}\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(child))
    message = str(error.value)
    assert message == f"{child}: its base file {secret} is not a YAML mapping of sections (the top level is a str)"
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfesecret-token-1234")
    child.write_text("base: binary.yaml\n")
    with pytest.raises(ConfigError, match=r"child.yaml: .*binary.yaml: not UTF-8 text$") as error:
        load_config(str(child))
    (tmp_path / "broken.yaml").write_text("model: {backbone: [secret-token-1234\n")
    child.write_text("base: broken.yaml\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML: .*\(line \d+, column \d+\)$") as error:
        load_config(str(child))
    assert "secret" not in str(error.value) and "\n" not in str(error.value)


def test_yaml_nested_too_deeply_is_named(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 200_000)
    with pytest.raises(ConfigError, match=r"deep.yaml: nested too deeply to read$"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"^override 'train\.lr_st.{,40}: the value is nested too deeply to read$"):
        load_config(None, ["train.lr_steps=" + "[" * 200_000])


def test_long_values_are_cut_and_nul_characters_refused(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump({"data": {"min_size": "x" * 10_000}}))
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    assert str(error.value).startswith(f"{path}: 'data.min_size' must be an integer, got 'xxx")
    assert len(str(error.value)) < len(str(path)) + 100
    path.write_text(yaml.safe_dump({"data": {"train": {"annotations": "a\0b"}}}))
    with pytest.raises(ConfigError, match=r"experiment.yaml: 'data.train.annotations' must be a string without NUL"):
        load_config(str(path))


@pytest.mark.parametrize("override, message", [
    ("model.decoder.iou_threshold=5", "'model.decoder.iou_threshold' must be in (0, 1], got 5"),
    ("model.backbone.weights=missing.weights.h5",
     "'model.backbone.weights' must be null, imagenet or a weights file, got 'missing.weights.h5', which is no file"),
])
def test_bin_train_refuses_a_bad_config_in_one_line_before_training(tmp_path, override, message):
    config = tmp_path / "bad.yaml"
    config.write_text("train: {batch_size: 2}\n")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "train"), f"--config={config}", f"--model_dir={tmp_path / 'model'}",
         f"--set={override}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"error: {config}: {message}"
    assert "Traceback" not in result.stderr and not (tmp_path / "model").exists()
