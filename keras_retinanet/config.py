"""Typed, validated experiment settings read from YAML, with `dotted.key=value` overrides.

An experiment file has three sections, `model`, `data` and `train`, each a dataclass below; each section of `model`
holds the constructor arguments of one component, under the same names. A file may start from another with
`base: other.yaml` (a path relative to it): its settings are laid over the base file's. Unknown keys and values of
the wrong type are errors that name the key (and the file); nothing is guessed. Setting names of earlier releases
(`RENAMED`) are still read.
"""

import dataclasses
import functools
import math
import os
import re
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
class PyramidConfig:
    """`keras_retinanet.layers.FeaturePyramid` arguments."""

    filters: int = 256
    p6_input: str = "c5"


@dataclasses.dataclass
class HeadConfig:
    """`keras_retinanet.layers.RetinaNetHead` arguments of both subnets (`prior_probability`: the class subnet's)."""

    filters: int = 256
    num_convs: int = 4
    normalization: Optional[str] = None
    prior_probability: float = 0.01


@dataclasses.dataclass
class MatcherConfig:
    """`keras_retinanet.boxes.Matcher` arguments."""

    positive_threshold: float = 0.5
    negative_threshold: float = 0.4
    allow_low_quality_matches: bool = True


# The settings each classification loss (`model.classification_loss.type`) takes; the others must keep their defaults.
CLASSIFICATION_LOSS_SETTINGS = {
    "focal": ("alpha", "gamma"),
    "focal_star": ("alpha", "gamma", "beta"),
    "ohem": ("alpha", "batch_size_per_image", "positive_fraction", "nms_iou_threshold"),
}


@dataclasses.dataclass
class ClassificationLossConfig:
    """The classification loss: `type` "focal" (`keras_retinanet.losses.FocalLoss`; gamma 0 is alpha-balanced
    cross-entropy), "focal_star" (`FocalLossStar`, Appendix A) or "ohem" (`OHEMLoss`, online hard example mining,
    Table 1d); the other keys are the arguments of that class (`CLASSIFICATION_LOSS_SETTINGS` says which). `alpha`
    keeps its 0.25 under every type unless set: the paper's FL* and OHEM have none (`alpha: null`)."""

    type: str = "focal"
    alpha: Optional[float] = 0.25
    gamma: float = 2.0
    beta: float = 1.0
    batch_size_per_image: int = 128
    positive_fraction: Optional[float] = None
    nms_iou_threshold: float = 0.7

    def arguments(self):
        """The constructor arguments of the loss `type` names."""
        return {name: getattr(self, name) for name in CLASSIFICATION_LOSS_SETTINGS[self.type]}

    def __post_init__(self):
        if self.type not in CLASSIFICATION_LOSS_SETTINGS:
            return  # from_dict names the allowed types
        defaults = ClassificationLossConfig.__dataclass_fields__
        for name, field in defaults.items():
            if name != "type" and name not in CLASSIFICATION_LOSS_SETTINGS[self.type] \
                    and getattr(self, name) != field.default:
                raise ConfigError(f"'model.classification_loss.{name}' does not apply to type {self.type!r} (it "
                                  f"takes {', '.join(CLASSIFICATION_LOSS_SETTINGS[self.type])})")


@dataclasses.dataclass
class BoxLossConfig:
    """The box loss: `type` one of `keras_retinanet.losses.BOX_LOSSES`; `beta` of `SmoothL1Loss`."""

    type: str = "smooth_l1"
    beta: float = 0.11


@dataclasses.dataclass
class DecoderConfig:
    """`keras_retinanet.layers.DetectionDecoder` arguments: inference."""

    score_threshold: float = 0.05
    pre_nms_top_k: int = 1000
    iou_threshold: float = 0.5
    max_detections: int = 100


@dataclasses.dataclass
class ModelConfig:
    """The detector: one section per component, and `RetinaNet`'s own `box_loss_weight` and
    `ignore_region_threshold`."""

    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    anchors: AnchorConfig = dataclasses.field(default_factory=AnchorConfig)
    pyramid: PyramidConfig = dataclasses.field(default_factory=PyramidConfig)
    heads: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    matcher: MatcherConfig = dataclasses.field(default_factory=MatcherConfig)
    classification_loss: ClassificationLossConfig = dataclasses.field(default_factory=ClassificationLossConfig)
    box_loss: BoxLossConfig = dataclasses.field(default_factory=BoxLossConfig)
    box_loss_weight: float = 1.0
    ignore_region_threshold: float = 0.5
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)


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
    to multiples of `size_divisor` (128: every pyramid level tiles the image exactly). `resize_rule`
    "torchvision" resizes and pads exactly as torchvision's detectors do (with `size_divisor` 32 and the backbone's
    "torch" normalisation), for converted torchvision weights; "detectron" as Detectron does (see
    `keras_retinanet.data.pipeline.RESIZE_RULES`). `strict`, `verify_images` and `max_image_pixels`
    set the bad-input policy (`keras_retinanet.data.policy.DataPolicy`).
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
    resize_rule: str = "detectron"
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

    `deterministic` turns on TensorFlow's op determinism (`tf.config.experimental.enable_op_determinism`, for the
    whole process): with the seeded initial weights and data order, which are the same with or without it, a run
    repeats bit for bit on the same machine and software (an op without a deterministic kernel is then an error).

    `dtype_policy` is the Keras dtype policy the model is built with, and saved with: "float32",
    "mixed_bfloat16" (bfloat16 compute, float32 weights; on CPUs with AVX512-BF16 or AMX, and TPUs and recent
    GPUs) or "mixed_float16" (GPUs; the optimizer gets Keras' dynamic loss scaling). Normalisation statistics,
    losses, box decoding and NMS stay in float32 under every policy. On CPU, XLA runs bfloat16 convolutions without
    oneDNN: a mixed_bfloat16 step took twice as long with `jit_compile` as without (ResNet-50, 640 px, bin/benchmark).
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
    dtype_policy: str = "float32"
    deterministic: bool = False


@dataclasses.dataclass
class ExperimentConfig:
    """A whole experiment: what `bin/train` reads and writes next to the model."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


@functools.cache
def choices():
    """{dotted key: allowed values} of the settings that take one of a few, as the modules that use them define them
    (imported on first use: they load TensorFlow)."""
    from keras_retinanet.backbones.resnet import NORMALIZATIONS, RESNET_ARCHITECTURES
    from keras_retinanet.data import FORMATS
    from keras_retinanet.data.pipeline import RESIZE_RULES
    from keras_retinanet.layers import anchor_generator, feature_pyramid, heads, image_normalization
    from keras_retinanet.losses import BOX_LOSSES, CLASSIFICATION_LOSSES
    from keras_retinanet.training.loop import DTYPE_POLICIES

    return {
        "model.backbone.depth": tuple(RESNET_ARCHITECTURES),
        "model.backbone.normalization": NORMALIZATIONS,
        "model.backbone.preprocessing": (*image_normalization.PRESETS, None),
        "model.anchors.mode": anchor_generator.MODES,
        "model.pyramid.p6_input": feature_pyramid.P6_INPUTS,
        "model.heads.normalization": heads.NORMALIZATIONS,
        "model.box_loss.type": tuple(BOX_LOSSES),
        "model.classification_loss.type": tuple(CLASSIFICATION_LOSSES),
        "data.resize_rule": RESIZE_RULES,
        "data.train.format": FORMATS,
        "data.val.format": FORMATS,
        "train.dtype_policy": DTYPE_POLICIES,
    }


POSITIVE = {
    "data.min_size", "data.max_size", "data.max_boxes", "data.max_image_pixels", "data.size_divisor",
    "train.batch_size", "train.iterations", "train.checkpoint_every", "train.eval_every", "train.learning_rate",
    "model.pyramid.filters", "model.heads.filters", "model.decoder.max_detections", "model.decoder.pre_nms_top_k",
    "model.classification_loss.batch_size_per_image",
}

# Setting names of earlier releases, per section: old key -> its key in the section now (dotted below it). Files,
# `--set` overrides and the configs stored in saved models use them still.
RENAMED = {
    "model.": {
        "pyramid_filters": "pyramid.filters", "p6_input": "pyramid.p6_input",
        "head_filters": "heads.filters", "head_convs": "heads.num_convs", "head_normalization": "heads.normalization",
        "prior_probability": "heads.prior_probability",
        "positive_threshold": "matcher.positive_threshold", "negative_threshold": "matcher.negative_threshold",
        "allow_low_quality_matches": "matcher.allow_low_quality_matches",
        "focal_loss": "classification_loss",
        "focal_alpha": "classification_loss.alpha", "focal_gamma": "classification_loss.gamma", "smooth_l1_beta": "box_loss.beta",
        "score_threshold": "decoder.score_threshold", "pre_nms_top_k": "decoder.pre_nms_top_k",
        "nms_iou_threshold": "decoder.iou_threshold", "max_detections": "decoder.max_detections",
    },
    "data.": {"preprocessing": "resize_rule"},
}


def load_config(path=None, overrides=()):
    """The experiment in YAML file `path` (defaults where None), with `dotted.key=value` overrides applied."""
    data = _read_with_bases(path, ()) if path is not None else {}
    for override in overrides:
        _apply_override(data, override)
    return from_dict(ExperimentConfig, data, source=path or "<defaults>")


def _read_with_bases(path, chain):
    """The settings of YAML file `path`, laid over those of its `base` file (recursively)."""
    path = os.path.normpath(path)
    if os.path.realpath(path) in map(os.path.realpath, chain):
        raise ConfigError(f"{path}: 'base' files form a cycle: {' -> '.join([*chain, path])}")
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{chain[-1] if chain else path}: cannot read config file {path}: {error.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {data!r}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be the path of another config file, got {base!r}")
    return _merged(_read_with_bases(os.path.join(os.path.dirname(path), base), (*chain, path)), data)


def _merged(base, update):
    """`update` laid over `base`: nested mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def from_dict(cls, data, source="<dict>", prefix=""):
    """Builds dataclass `cls` from a nested dict, checking every key and type."""
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {data!r}")
    data = _renamed_keys_moved(data, prefix, source)
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
        allowed = choices().get(key)
        if allowed is not None and values[name] not in allowed:
            raise ConfigError(f"{source}: '{key}' must be one of {allowed}, got {values[name]!r}")
        if key in POSITIVE and values[name] <= 0:
            raise ConfigError(f"{source}: '{key}' must be positive, got {values[name]!r}")
    return cls(**values)


def _renamed_keys_moved(data, prefix, source):
    """`data` with the `RENAMED` keys of its section moved to their keys now; both given is an error."""
    renamed = RENAMED.get(prefix, {})
    data = dict(data)
    if prefix == "model." and isinstance(data.get("box_loss"), str):  # once the box loss's name, now its section
        data["box_loss"] = {"type": data["box_loss"]}
    for old in [key for key in data if key in renamed]:
        *parents, leaf = renamed[old].split(".")
        node = data
        for parent in parents:
            node[parent] = node = dict(node.get(parent) or {})
        if leaf in node:
            raise ConfigError(f"{source}: '{prefix}{old}' and '{prefix}{renamed[old]}' are the same setting (its "
                              "old and new name): give it once")
        node[leaf] = data.pop(old)
    return data


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
        number = _integral(value)
        if number is None:
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return number
    if field_type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if field_type is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {field_type} for '{key}'")


def _integral(value):
    """`value` as an int if it is one: 50000000, 5e7 or 50e6 (YAML reads `50e6` as a string, `5.0e+7` as a float);
    else None (booleans, fractions, text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+", value.strip()):
        value = float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None
