"""Typed, validated experiment settings read from YAML, with `dotted.key=value` overrides.

An experiment file has three sections, `model`, `data` and `train`, each a dataclass below. Unknown keys and values
of the wrong type are errors that name the key (and the file); nothing is guessed.
"""

import dataclasses
import math
import types
import typing
from typing import Optional

import yaml


class ConfigError(ValueError):
    """An experiment setting that is unknown, of the wrong type or out of range."""


@dataclasses.dataclass
class BackboneConfig:
    """`keras_retinanet.backbones.ResNetBackbone` arguments (see there)."""

    depth: int = 50
    stride_in_1x1: bool = True
    normalization: str = "frozen_bn"
    bn_epsilon: float = 1.001e-5
    frozen_stages: int = 2
    preprocessing: Optional[str] = "caffe"
    weights: Optional[str] = "imagenet"
    width_multiplier: float = 1.0


@dataclasses.dataclass
class AnchorConfig:
    """`keras_retinanet.layers.AnchorGenerator` arguments; `sizes` None means the paper's 32 ... 512."""

    sizes: Optional[tuple[float, ...]] = None
    scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    mode: str = "paper"


@dataclasses.dataclass
class ModelConfig:
    """The detector: pyramid and heads, anchors, matching, losses and inference."""

    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    anchors: AnchorConfig = dataclasses.field(default_factory=AnchorConfig)
    pyramid_filters: int = 256
    p6_input: str = "c5"
    head_filters: int = 256
    head_convs: int = 4
    head_normalization: Optional[str] = None
    prior_probability: float = 0.01
    positive_threshold: float = 0.5
    negative_threshold: float = 0.4
    allow_low_quality_matches: bool = True
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_loss: str = "smooth_l1"
    smooth_l1_beta: float = 0.11
    box_loss_weight: float = 1.0
    score_threshold: float = 0.05
    pre_nms_top_k: int = 1000
    nms_iou_threshold: float = 0.5
    max_detections: int = 100


@dataclasses.dataclass
class SplitConfig:
    """Where one split of a dataset lives, in which `format` (see `keras_retinanet.data.read_dataset`).

    coco: `annotations` an instances JSON, `images` its image folder. voc: `annotations` a folder of XML files or
    an image-set list (`ImageSets/Main/train.txt`, XMLs in `../../Annotations`), `images` the JPEG folder.
    csv: `annotations` a `path,x1,y1,x2,y2,class` file, `images` the folder its paths are relative to.
    tfrecord: `annotations` a TFRecord file or glob of shards (images embedded; `images` unused).
    `classes`: a class file (`name,id` lines; VOC: also one name per line; TFRecord: also a label_map.pbtxt), or
    empty to take the classes from the data (sorted names).
    """

    annotations: str = ""
    images: str = ""
    format: str = "coco"
    classes: str = ""


@dataclasses.dataclass
class DataConfig:
    """Datasets and input pipeline: resize to `min_size` on the shorter side (longer side <= `max_size`).

    `max_boxes` is the most ground-truth boxes (crowd regions included) of any image: an image with more is an
    error, never truncated. `cache_images` keeps decoded images in memory, for small datasets. Images are padded
    to multiples of `size_divisor` (128: every pyramid level tiles the image exactly). `preprocessing`
    "torchvision" resizes and pads exactly as torchvision's detectors do (with `size_divisor` 32 and the backbone's
    "torch" normalisation), for converted torchvision weights. `strict`, `verify_images` and `max_image_pixels`
    set the bad-input policy (`keras_retinanet.data.validation.DataPolicy`).
    """

    train: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    val: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    min_size: int = 800
    max_size: int = 1333
    horizontal_flip: bool = True
    scale_jitter: tuple[float, float] = (1.0, 1.0)
    max_boxes: int = 100
    seed: int = 0
    cache_images: bool = False
    size_divisor: int = 128
    preprocessing: str = "detectron"
    strict: bool = False
    verify_images: bool = True
    max_image_pixels: int = 50_000_000


@dataclasses.dataclass
class TrainConfig:
    """SGD with linear warm-up and step decay (Detectron's schedule).

    An "epoch" of `model.fit` is `checkpoint_every` iterations: a resumable backup is written after each, and COCO
    evaluation runs every `eval_every` iterations (a multiple of `checkpoint_every`). `jit_compile` compiles the
    train step with XLA, which pays off when image sizes repeat (each new padded size compiles anew). `clip_norm`
    clips the global gradient norm (None: no clipping), which steadies training from scratch.
    """

    batch_size: int = 16
    iterations: int = 90000
    learning_rate: float = 0.01
    lr_steps: tuple[int, ...] = (60000, 80000)
    lr_decay: float = 0.1
    warmup_iterations: int = 500
    warmup_factor: float = 1.0 / 3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    checkpoint_every: int = 5000
    eval_every: int = 10000
    jit_compile: bool = False
    clip_norm: Optional[float] = None


@dataclasses.dataclass
class ExperimentConfig:
    """A whole experiment: what `bin/train` reads and writes next to the model."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


CHOICES = {
    "model.backbone.depth": (18, 34, 50, 101, 152),
    "model.backbone.normalization": ("frozen_bn", "batch_norm"),
    "model.backbone.preprocessing": ("caffe", "torch", None),
    "model.anchors.mode": ("paper", "torchvision"),
    "model.p6_input": ("c5", "p5"),
    "model.head_normalization": (None, "group_norm"),
    "model.box_loss": ("smooth_l1", "l1", "giou"),
    "data.preprocessing": ("detectron", "torchvision"),
    "data.train.format": ("coco", "voc", "csv", "tfrecord"),
    "data.val.format": ("coco", "voc", "csv", "tfrecord"),
}


POSITIVE = {
    "data.min_size", "data.max_size", "data.max_boxes", "data.max_image_pixels", "data.size_divisor",
    "train.batch_size", "train.iterations", "train.checkpoint_every", "train.eval_every", "model.pyramid_filters", "model.head_filters", "model.max_detections",
    "model.pre_nms_top_k", "train.learning_rate",
}


def load_config(path=None, overrides=()):
    """The experiment in YAML file `path` (defaults where None), with `dotted.key=value` overrides applied."""
    data = {}
    source = path or "<defaults>"
    if path is not None:
        with open(path, encoding="utf-8") as stream:
            try:
                data = yaml.safe_load(stream) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {data!r}")
    for override in overrides:
        _apply_override(data, override)
    return from_dict(ExperimentConfig, data, source=source)


def from_dict(cls, data, source="<dict>", prefix=""):
    """Builds dataclass `cls` from a nested dict, checking every key and type."""
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {data!r}")
    fields = {field.name: field for field in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' (known keys here: {known})")
    values = {}
    for name, field in fields.items():
        if name not in data:
            continue
        key = prefix + name
        field_type = typing.get_type_hints(cls)[name]
        if dataclasses.is_dataclass(field_type):
            values[name] = from_dict(field_type, data[name], source, key + ".")
        else:
            values[name] = _convert(data[name], field_type, key, source)
        if key in CHOICES and values[name] not in CHOICES[key]:
            raise ConfigError(f"{source}: '{key}' must be one of {CHOICES[key]}, got {values[name]!r}")
        if key in POSITIVE and values[name] <= 0:
            raise ConfigError(f"{source}: '{key}' must be positive, got {values[name]!r}")
    return cls(**values)


def to_dict(config):
    """Plain nested dict (tuples as lists) of a config, for YAML and JSON."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(config))))


def dump_config(config, path):
    """Writes `config` as YAML that `load_config` reads back to an equal config."""
    with open(path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(to_dict(config), stream, sort_keys=False)


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _apply_override(data, override):
    key, separator, text = override.partition("=")
    if not separator or not key:
        raise ConfigError(f"override {override!r} is not of the form dotted.key=value")
    *parents, leaf = key.split(".")
    node = data
    for parent in parents:
        node = node.setdefault(parent, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: '{parent}' is not a section")
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: cannot parse the value: {error}") from None


def _convert(value, field_type, key, source):
    """`value` as `field_type` (int, float, bool, str, Optional[...] or tuple[...]), or a ConfigError."""
    origin = typing.get_origin(field_type)
    arguments = typing.get_args(field_type)
    if origin in (typing.Union, types.UnionType) and type(None) in arguments:
        if value is None:
            return None
        (field_type,) = [argument for argument in arguments if argument is not type(None)]
        return _convert(value, field_type, key, source)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            item_types = [arguments[0]] * len(value)
        else:
            if len(value) != len(arguments):
                raise ConfigError(f"{source}: '{key}' must have {len(arguments)} items, got {value!r}")
            item_types = arguments
        return tuple(_convert(item, item_type, f"{key}[{i}]", source)
                     for i, (item, item_type) in enumerate(zip(value, item_types)))
    if field_type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if field_type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if field_type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if field_type is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {field_type} for '{key}'")
