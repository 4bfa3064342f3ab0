"""Typed, validated experiment settings read from YAML, with `dotted.key=value` overrides.

An experiment file has three sections, `model`, `data` and `train`, each a dataclass below; each section of `model`
holds the constructor arguments of one component, under the same names. A file may start from another with
`base: other.yaml` (a path relative to it): its settings are laid over the base file's. Unknown keys, values of the
wrong type or out of range (each field's `ranged` interval: the limits of the component that takes it) and settings
that do not go together (`RELATIONS`) are errors found as the file is read, before anything trains, in one line that
names the file and the dotted key; nothing is guessed, and nothing of a file that is no config is quoted. Setting
names of earlier releases (`RENAMED`) are still read.
"""

import dataclasses
import functools
import math
import os
import re
import reprlib
import types
import typing
from typing import Optional

import yaml

from keras_retinanet.errors import InputError


class ConfigError(InputError, ValueError):
    """An experiment setting that is unknown, of the wrong type or out of range."""


def shown(value):
    """`repr(value)` for an error message: nesting and length bounded (`reprlib`), cut as `cut` does."""
    return cut(reprlib.repr(value))


def cut(text, limit=40):
    """`text`, or its first `limit` characters and "..." if longer: what error messages quote of what users wrote."""
    return text if len(text) <= limit else text[:limit] + "..."


@dataclasses.dataclass(frozen=True)
class Interval:
    """The numbers a setting may take, written in interval notation (`parse`)."""

    text: str
    low: float
    high: float
    low_open: bool
    high_open: bool

    @classmethod
    def parse(cls, text):
        """"[0, 1)" holds 0 and not 1; "inf" leaves an end open: "(0, inf)" is every positive number."""
        opening, low, high, closing = re.fullmatch(r"([\[(])(-inf|[-0-9.e]+), (inf|[-0-9.e]+)([\])])", text).groups()
        return cls(text, float(low), float(high), opening == "(", closing == ")")

    def __contains__(self, value):
        above = self.low < value if self.low_open else self.low <= value
        return above and (value < self.high if self.high_open else value <= self.high)


# The components `train.freeze` and `model.init_components` may name (`keras_retinanet.models.transfer.COMPONENTS`
# maps them to the `RetinaNet`'s layers).
FREEZABLE = ("backbone", "pyramid", "box_head", "class_head")

INT32_MAX = 2**31 - 1
COUNT = f"[1, {INT32_MAX}]"  # sizes and counts: TensorFlow holds them as int32
# Settings that size what is allocated are bounded further, well past any model or dataset in use, so that a
# config cannot ask for terabytes: layers and channels of the network, image sides (as bin/export's input sides),
# boxes and detections per image.
CHANNELS = "[1, 4096]"
IMAGE_SIDE = "[1, 8192]"
PER_IMAGE = "[1, 100000]"


def ranged(default, interval):
    """A field with `default` whose numbers (a tuple's: each item) must lie in `interval` (see `Interval`): the
    limits of the component that takes the setting, checked as the config is read (`from_dict`)."""
    return dataclasses.field(default=default, metadata={"range": Interval.parse(interval)})


# The settings each backbone type (`model.backbone.type`) takes; the others must keep their defaults.
BACKBONE_SETTINGS = {
    "resnet": ("depth", "stride_in_1x1", "normalization", "bn_epsilon", "frozen_stages", "preprocessing", "weights",
               "width_multiplier"),
    "keras_applications": ("name", "normalization", "frozen_stages", "weights", "width_multiplier"),
}


@dataclasses.dataclass
class BackboneConfig:
    """The backbone: `type` "resnet" (`keras_retinanet.backbones.ResNetBackbone`, ours) or "keras_applications"
    (`KerasApplicationsBackbone`: MobileNet, EfficientNet, ConvNeXt, ... by `name`, the input normalisation its
    weights expect built in); the other keys are the arguments of that class (`BACKBONE_SETTINGS` says which)."""

    type: str = "resnet"
    name: Optional[str] = None
    depth: int = 50
    stride_in_1x1: bool = True
    normalization: str = "frozen_bn"
    bn_epsilon: float = ranged(1.001e-5, "[0, inf)")
    frozen_stages: int = ranged(2, "[0, 5]")
    preprocessing: Optional[str] = "caffe"
    weights: Optional[str] = "imagenet"
    width_multiplier: float = ranged(1.0, "(0, 16]")

    def arguments(self):
        """The constructor arguments of the backbone `type` names."""
        return {name: getattr(self, name) for name in BACKBONE_SETTINGS[self.type]}

    def __post_init__(self):
        _check_type_settings(self, BACKBONE_SETTINGS, "model.backbone")


@dataclasses.dataclass
class AnchorConfig:
    """`keras_retinanet.layers.AnchorGenerator` arguments; `sizes` None means the paper's 32 ... 512. `fit`: at the
    start of training, fit `sizes`, `scales` and `aspect_ratios` to the training boxes (the count per location
    kept) and store them in the model and the run's config; a resumed run keeps them."""

    sizes: Optional[tuple[float, ...]] = ranged(None, "(0, inf)")
    scales: tuple[float, ...] = ranged((1.0, 2 ** (1 / 3), 2 ** (2 / 3)), "(0, inf)")
    aspect_ratios: tuple[float, ...] = ranged((0.5, 1.0, 2.0), "(0, inf)")
    mode: str = "paper"
    fit: bool = False

    def generator_arguments(self):
        """The `AnchorGenerator` constructor arguments (all but `fit`)."""
        return {name: value for name, value in vars(self).items() if name != "fit"}


@dataclasses.dataclass
class PyramidConfig:
    """`keras_retinanet.layers.FeaturePyramid` arguments."""

    filters: int = ranged(256, CHANNELS)
    p6_input: str = "c5"
    separable: bool = False


@dataclasses.dataclass
class HeadConfig:
    """`keras_retinanet.layers.RetinaNetHead` arguments of both subnets (`prior_probability`: the class subnet's)."""

    filters: int = ranged(256, CHANNELS)
    num_convs: int = ranged(4, "[0, 32]")
    normalization: Optional[str] = None
    prior_probability: float = ranged(0.01, "(0, 1)")
    separable: bool = False


@dataclasses.dataclass
class MatcherConfig:
    """`keras_retinanet.boxes.Matcher` arguments."""

    positive_threshold: float = ranged(0.5, "[0, 1]")
    negative_threshold: float = ranged(0.4, "[0, 1]")
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
    alpha: Optional[float] = ranged(0.25, "[0, 1]")
    gamma: float = ranged(2.0, "[0, inf)")
    beta: float = ranged(1.0, "(-inf, inf)")
    batch_size_per_image: int = ranged(128, COUNT)
    positive_fraction: Optional[float] = ranged(None, "(0, 1]")
    nms_iou_threshold: float = ranged(0.7, "(0, 1]")

    def arguments(self):
        """The constructor arguments of the loss `type` names."""
        return {name: getattr(self, name) for name in CLASSIFICATION_LOSS_SETTINGS[self.type]}

    def __post_init__(self):
        _check_type_settings(self, CLASSIFICATION_LOSS_SETTINGS, "model.classification_loss")


def _check_type_settings(section, settings, where):
    """ConfigError naming a setting of `section` (a dataclass with a `type`) given a value other than its default
    where its type does not take it (`settings`: {type: the settings it takes})."""
    if section.type not in settings:
        return  # from_dict names the allowed types
    for name, field in type(section).__dataclass_fields__.items():
        if name != "type" and name not in settings[section.type] and getattr(section, name) != field.default:
            raise ConfigError(f"'{where}.{name}' does not apply to type {section.type!r} (it takes "
                              f"{', '.join(settings[section.type])})")


@dataclasses.dataclass
class BoxLossConfig:
    """The box loss: `type` one of `keras_retinanet.losses.BOX_LOSSES`; `beta` of `SmoothL1Loss`."""

    type: str = "smooth_l1"
    beta: float = ranged(0.11, "[0, inf)")


@dataclasses.dataclass
class DecoderConfig:
    """`keras_retinanet.layers.DetectionDecoder` arguments: inference."""

    score_threshold: float = ranged(0.05, "[0, 1)")
    pre_nms_top_k: int = ranged(1000, PER_IMAGE)
    iou_threshold: float = ranged(0.5, "(0, 1]")
    max_detections: int = ranged(100, PER_IMAGE)
    min_box_size: float = ranged(0.01, "(0, inf)")


@dataclasses.dataclass
class ModelConfig:
    """The detector: one section per component, and `RetinaNet`'s own `box_loss_weight` and
    `ignore_region_threshold`.

    `init_from` names a trained detector to fine-tune from (`keras_retinanet.training.fine_tuning`): a `.keras`
    file, a model directory of `bin/train`, a torchvision RetinaNet `.pth`, or a name `bin/fetch_weights` knows.
    Its architecture replaces the settings this config does not give; its weights replace `backbone.weights`.
    `init_components` says which of its components (`FREEZABLE`'s names; default all) are copied: the others start
    as from scratch (the class subnet with the prior), and only the architecture of those copied (and of those
    before them) must be the source's: `[backbone]` takes a backbone alone, whatever the source's heads."""

    backbone: BackboneConfig = dataclasses.field(default_factory=BackboneConfig)
    anchors: AnchorConfig = dataclasses.field(default_factory=AnchorConfig)
    pyramid: PyramidConfig = dataclasses.field(default_factory=PyramidConfig)
    heads: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    matcher: MatcherConfig = dataclasses.field(default_factory=MatcherConfig)
    classification_loss: ClassificationLossConfig = dataclasses.field(default_factory=ClassificationLossConfig)
    box_loss: BoxLossConfig = dataclasses.field(default_factory=BoxLossConfig)
    box_loss_weight: float = ranged(1.0, "[0, inf)")
    ignore_region_threshold: float = ranged(0.5, "(0, 1]")
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    init_from: Optional[str] = None
    init_components: tuple[str, ...] = FREEZABLE


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


class AugmentationStep:
    """A step of `data.augmentation`: a dataclass whose `type` names it (`AUGMENTATION_STEPS`), applied with
    `probability`; `keras_retinanet.data.augmentation` does what it says."""


@dataclasses.dataclass
class PhotometricDistortion(AugmentationStep):
    """SSD's colour changes: brightness, contrast and saturation each multiplied by a factor drawn from its range,
    the hue turned by a fraction of the hue circle drawn from `hue`, each with `probability` (on its own)."""

    type: str = "photometric"
    probability: float = ranged(0.5, "[0, 1]")
    brightness: tuple[float, float] = ranged((0.875, 1.125), "[0, inf)")
    contrast: tuple[float, float] = ranged((0.5, 1.5), "[0, inf)")
    saturation: tuple[float, float] = ranged((0.5, 1.5), "[0, inf)")
    hue: tuple[float, float] = ranged((-0.05, 0.05), "[-0.5, 0.5]")


@dataclasses.dataclass
class IoUCrop(AugmentationStep):
    """SSD's random crop: a minimum IoU drawn from `min_ious` (null: keep the whole image; 0: any patch), then up
    to `trials` patches (sides a `scale` share of the image's, width / height within `aspect_ratio`) until one has
    an object whose centre it holds at that IoU or more (none: the whole image). Boxes whose centre leaves the
    patch are dropped, the others clipped to it."""

    type: str = "iou_crop"
    probability: float = ranged(1.0, "[0, 1]")
    min_ious: tuple[Optional[float], ...] = ranged((None, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9), "[0, 1]")
    scale: tuple[float, float] = ranged((0.3, 1.0), "(0, 1]")
    aspect_ratio: tuple[float, float] = ranged((0.5, 2.0), "(0, inf)")
    trials: int = ranged(40, "[1, 1000]")


@dataclasses.dataclass
class ZoomOut(AugmentationStep):
    """SSD's expansion: the image placed at random on a canvas `ratio` times its sides (drawn from the range),
    filled with the resize rule's padding pixel (`keras_retinanet.data.pipeline.padding_pixel`)."""

    type: str = "zoom_out"
    probability: float = ranged(0.5, "[0, 1]")
    ratio: tuple[float, float] = ranged((1.0, 4.0), "[1, 8]")


@dataclasses.dataclass
class RandomResize(AugmentationStep):
    """The resize to `data.min_size` / `max_size`, both times a factor drawn from `scale` (multi-scale training;
    factor 1 without `probability`). A list without a resize step resizes last, by factor 1."""

    type: str = "resize"
    probability: float = ranged(1.0, "[0, 1]")
    scale: tuple[float, float] = ranged((1.0, 1.0), "(0, inf)")


@dataclasses.dataclass
class HorizontalFlip(AugmentationStep):
    """The image and its boxes mirrored left-right."""

    type: str = "horizontal_flip"
    probability: float = ranged(0.5, "[0, 1]")


# `data.augmentation` step types: `type` -> its settings.
AUGMENTATION_STEPS = {step.type: step for step in (
    PhotometricDistortion, IoUCrop, ZoomOut, RandomResize, HorizontalFlip
)}


@dataclasses.dataclass
class DataConfig:
    """Datasets and input pipeline: resize to `min_size` on the shorter side (longer side <= `max_size`).

    `max_boxes` is the most ground-truth boxes (crowd regions included) of any image: an image with more is an
    error, never truncated; None (the default) takes the training split's most, rounded up to a multiple of 8
    (`keras_retinanet.data.pipeline.needed_max_boxes`), and training writes it into the saved config.
    `cache_images` keeps decoded images in memory, for small datasets. Images are padded to multiples of
    `size_divisor` (128: every pyramid level tiles the image exactly). `resize_rule`
    "torchvision" resizes and pads exactly as torchvision's detectors do (with `size_divisor` 32 and the backbone's
    "torch" normalisation), for converted torchvision weights; "detectron" as Detectron does (see
    `keras_retinanet.data.pipeline.RESIZE_RULES`). `strict`, `verify_images` and `max_image_pixels`
    set the bad-input policy (`keras_retinanet.data.policy.DataPolicy`).

    `augmentation` lists the training augmentation steps, in order (`AUGMENTATION_STEPS`; see
    `augmentation_steps`); None (the default) is a resize with `scale_jitter`, then a flip if `horizontal_flip`.
    """

    train: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    val: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    min_size: int = ranged(800, IMAGE_SIDE)
    max_size: int = ranged(1333, IMAGE_SIDE)
    horizontal_flip: bool = True
    scale_jitter: tuple[float, float] = ranged((1.0, 1.0), "(0, inf)")
    max_boxes: Optional[int] = ranged(None, PER_IMAGE)
    seed: int = ranged(0, f"[0, {2**32 - 1}]")
    cache_images: bool = False
    size_divisor: int = ranged(128, "[1, 1024]")
    resize_rule: str = "detectron"
    strict: bool = False
    verify_images: bool = True
    max_image_pixels: int = ranged(50_000_000, "[1, inf)")
    augmentation: Optional[tuple[AugmentationStep, ...]] = dataclasses.field(
        default=None, metadata={"steps": AUGMENTATION_STEPS}
    )

    def augmentation_steps(self):
        """The augmentation steps training applies: `augmentation`, or those `scale_jitter` and `horizontal_flip`
        say; a resize (by factor 1) appended where the list has none."""
        if self.augmentation is None:
            return (RandomResize(scale=self.scale_jitter), *([HorizontalFlip()] if self.horizontal_flip else []))
        resizes = [step for step in self.augmentation if step.type == RandomResize.type]
        return self.augmentation if resizes else (*self.augmentation, RandomResize())


@dataclasses.dataclass
class TrainConfig:
    """SGD with linear warm-up and step decay (Detectron's schedule).

    An "epoch" of `model.fit` is `checkpoint_every` iterations: a resumable backup is written after each, and COCO
    evaluation runs every `eval_every` iterations (a multiple of `checkpoint_every`). `jit_compile` compiles the
    train step with XLA, which pays off when image sizes repeat (each new padded size compiles anew). `clip_norm`
    clips the global gradient norm (None: no clipping), which steadies training from scratch.

    `freeze` lists components whose weights training keeps as they are (`layer.trainable = False`): any of
    `FREEZABLE`; the backbone's first `model.backbone.frozen_stages` stages are frozen whatever this says.

    `log_gradient_norms` logs each step's gradient norm before clipping, in all and per loss term, and the share of
    steps `clip_norm` clipped (`RetinaNet.compile(gradient_norms=True)`: TensorBoard and the training logs show
    them); it costs a second backward pass a step.

    `deterministic` turns on TensorFlow's op determinism (`tf.config.experimental.enable_op_determinism`, for the
    whole process): with the seeded initial weights and data order, which are the same with or without it, a run
    repeats bit for bit on the same machine and software (an op without a deterministic kernel is then an error).

    `dtype_policy` is the Keras dtype policy the model is built with, and saved with: "float32",
    "mixed_bfloat16" (bfloat16 compute, float32 weights; on CPUs with AVX512-BF16 or AMX, and TPUs and recent
    GPUs) or "mixed_float16" (GPUs; the optimizer gets Keras' dynamic loss scaling). Normalisation statistics,
    losses, box decoding and NMS stay in float32 under every policy. On CPU, XLA runs bfloat16 convolutions without
    oneDNN: a mixed_bfloat16 step took twice as long with `jit_compile` as without (ResNet-50, 640 px, bin/benchmark).
    """

    batch_size: int = ranged(16, COUNT)
    iterations: int = ranged(90000, "[1, inf)")
    learning_rate: float = ranged(0.01, "(0, inf)")
    lr_steps: tuple[int, ...] = ranged((60000, 80000), "[1, inf)")
    lr_decay: float = ranged(0.1, "(0, 1]")
    warmup_iterations: int = ranged(500, "[0, inf)")
    warmup_factor: float = ranged(1.0 / 3, "[0, 1]")
    momentum: float = ranged(0.9, "[0, 1]")
    weight_decay: float = ranged(1e-4, "[0, inf)")
    checkpoint_every: int = ranged(5000, "[1, inf)")
    eval_every: int = ranged(10000, "[1, inf)")
    jit_compile: bool = False
    clip_norm: Optional[float] = ranged(None, "(0, inf)")
    dtype_policy: str = "float32"
    deterministic: bool = False
    freeze: tuple[str, ...] = ()
    log_gradient_norms: bool = False


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
    from keras_retinanet.backbones import BACKBONES
    from keras_retinanet.backbones.keras_applications import APPLICATIONS
    from keras_retinanet.backbones.resnet import NORMALIZATIONS, RESNET_ARCHITECTURES
    from keras_retinanet.data import FORMATS
    from keras_retinanet.data.pipeline import RESIZE_RULES
    from keras_retinanet.layers import anchor_generator, feature_pyramid, heads, image_normalization
    from keras_retinanet.losses import BOX_LOSSES, CLASSIFICATION_LOSSES
    from keras_retinanet.precision import DTYPE_POLICIES

    return {
        "model.backbone.type": tuple(BACKBONES),
        "model.backbone.name": (None, *APPLICATIONS),
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


@dataclasses.dataclass(frozen=True)
class Relation:
    """A limit that joins settings of one section (`keys`), or a tuple's length: `holds(section)` must be true, as
    `text` says."""

    keys: tuple
    text: str
    holds: typing.Callable


def _pyramid_levels():
    from keras_retinanet.layers import FeaturePyramid

    return FeaturePyramid.max_level - FeaturePyramid.min_level + 1


def _takes_imagenet_weights(backbone):
    """Whether keras.applications' ResNet weights fit `backbone` (a `BackboneConfig`), by the loader's own checks."""
    from keras_retinanet.backbones.resnet_weights import _check_backbone

    try:
        _check_backbone(backbone)
    except ValueError:
        return False
    return backbone.bn_epsilon == BackboneConfig.bn_epsilon  # keras.applications' epsilon


def _width_scalable(name):
    from keras_retinanet.backbones.keras_applications import WIDTH_SCALABLE

    return name in WIDTH_SCALABLE


def _ordered(name):
    """The relation of a (lowest, highest) range setting."""
    return Relation((name,), "holds the lowest and the highest value: the first must not exceed the second",
                    lambda section: getattr(section, name)[0] <= getattr(section, name)[1])


def _steps_of(data, step_type):
    """The steps of `step_type` in `data.augmentation` (a `DataConfig`'s)."""
    return [step for step in data.augmentation or () if isinstance(step, step_type)]


def _components(names):
    """Whether `names` are names of `FREEZABLE`, each at most once."""
    return set(names) <= set(FREEZABLE) and len(set(names)) == len(names)


# The relations of each section, checked once it is read (`from_dict`); the ranges of single settings are their
# fields' (`ranged`), the allowed values of named choices `choices()`'s.
RELATIONS = {
    ModelConfig: (
        Relation(("init_components",), f"names one or more of {FREEZABLE}, each at most once, and nothing else",
                 lambda model: len(model.init_components) > 0 and _components(model.init_components)),
        Relation(("init_components", "init_from"), "init_components says what init_from gives: give init_from "
                 "too, or leave init_components out",
                 lambda model: model.init_from is not None or set(model.init_components) == set(FREEZABLE)),
    ),
    BackboneConfig: (
        Relation(("weights", "depth", "width_multiplier", "stride_in_1x1", "preprocessing", "bn_epsilon"),
                 "ImageNet weights (keras.applications') exist for depth 50, 101 and 152 with width_multiplier 1, "
                 "stride_in_1x1 true, preprocessing 'caffe' and bn_epsilon 1.001e-05: change these or set "
                 "weights: null",
                 lambda backbone: backbone.type != "resnet" or backbone.weights != "imagenet"
                 or _takes_imagenet_weights(backbone)),
        Relation(("type", "name"), "a keras_applications backbone needs the application's name (MobileNetV2, "
                 "EfficientNetV2B0, ConvNeXtTiny, ...)",
                 lambda backbone: backbone.type != "keras_applications" or backbone.name is not None),
        Relation(("name", "width_multiplier"), "only MobileNet, MobileNetV2 and MobileNetV3 have a width multiplier "
                 "(their alpha): keep 1 for the others",
                 lambda backbone: backbone.type != "keras_applications" or backbone.width_multiplier == 1.0
                 or _width_scalable(backbone.name)),
    ),
    AnchorConfig: (
        Relation(("sizes",), "needs one size per pyramid level, P3 to P7 (or null: the paper's 32 to 512)",
                 lambda anchors: anchors.sizes is None or len(anchors.sizes) == _pyramid_levels()),
        Relation(("scales",), "must not be empty", lambda anchors: len(anchors.scales) > 0),
        Relation(("aspect_ratios",), "must not be empty", lambda anchors: len(anchors.aspect_ratios) > 0),
    ),
    HeadConfig: (
        Relation(("normalization", "filters"), "group_norm splits the filters into 32 groups: make filters a multiple "
                 "of 32", lambda heads: heads.normalization != "group_norm" or heads.filters % 32 == 0),
    ),
    MatcherConfig: (
        Relation(("negative_threshold", "positive_threshold"),
                 "the negative threshold must not exceed the positive one",
                 lambda matcher: matcher.negative_threshold <= matcher.positive_threshold),
    ),
    ClassificationLossConfig: (
        Relation(("type", "gamma"), "FL* divides by gamma: it must be above 0",
                 lambda loss: loss.type != "focal_star" or loss.gamma > 0),
    ),
    BoxLossConfig: (
        Relation(("type", "beta"), "beta is smooth_l1's: it does not apply to the other types",
                 lambda loss: loss.type == "smooth_l1" or loss.beta == BoxLossConfig.beta),
    ),
    DataConfig: (
        Relation(("min_size", "max_size"), "the shorter side cannot be longer than the longer side",
                 lambda data: data.min_size <= data.max_size),
        Relation(("scale_jitter",), "holds the lowest and the highest factor: the first must not exceed the second",
                 lambda data: data.scale_jitter[0] <= data.scale_jitter[1]),
        Relation(("augmentation", "scale_jitter"), "a list of augmentation steps replaces scale_jitter: give its "
                 "range as the scale of a resize step",
                 lambda data: data.augmentation is None or tuple(data.scale_jitter) == DataConfig.scale_jitter),
        Relation(("augmentation", "horizontal_flip"), "horizontal_flip false contradicts the list's horizontal_flip "
                 "step", lambda data: data.horizontal_flip or not _steps_of(data, HorizontalFlip)),
        Relation(("augmentation",), "holds at most one resize step",
                 lambda data: len(_steps_of(data, RandomResize)) < 2),
    ),
    PhotometricDistortion: tuple(_ordered(name) for name in ("brightness", "contrast", "saturation", "hue")),
    IoUCrop: (
        _ordered("scale"), _ordered("aspect_ratio"),
        Relation(("min_ious",), "must not be empty", lambda crop: len(crop.min_ious) > 0),
    ),
    ZoomOut: (_ordered("ratio"),),
    RandomResize: (_ordered("scale"),),
    TrainConfig: (
        Relation(("eval_every", "checkpoint_every"), "evaluation runs at the end of a checkpoint interval: eval_every "
                 "must be a multiple of checkpoint_every",
                 lambda train: train.eval_every % train.checkpoint_every == 0),
        Relation(("lr_steps",), "must increase", lambda train: list(train.lr_steps) == sorted(set(train.lr_steps))),
        Relation(("freeze",), f"names each of {FREEZABLE} at most once, and nothing else",
                 lambda train: _components(train.freeze)),
    ),
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
        "focal_alpha": "classification_loss.alpha", "focal_gamma": "classification_loss.gamma",
        "smooth_l1_beta": "box_loss.beta",
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


def given_settings(path=None, overrides=()):
    """The dotted keys (`model.backbone.depth`, ...) that the YAML file `path`, its `base` files and the overrides
    set, under their names now (`RENAMED`): what a user wrote, as opposed to the defaults. Call it after
    `load_config` has accepted the same arguments."""
    data = _read_with_bases(path, ()) if path is not None else {}
    for override in overrides:
        _apply_override(data, override)
    return frozenset(_leaf_keys(ExperimentConfig, data, ""))


def _leaf_keys(cls, data, prefix):
    data = _renamed_keys_moved(data, prefix, "<given>")
    for field in dataclasses.fields(cls):
        if field.name in data:
            field_type = typing.get_type_hints(cls)[field.name]
            if dataclasses.is_dataclass(field_type):
                yield from _leaf_keys(field_type, data[field.name], f"{prefix}{field.name}.")
            else:
                yield prefix + field.name


def read_yaml(path, what="config file"):
    """The YAML in file `path`, None if empty; a ConfigError naming the file where it cannot be read or parsed
    (never quoting the file: it may be anything)."""
    if "\0" in str(path):
        raise ConfigError(f"cannot read {what} {shown(path)}: a path holds no NUL character")
    try:
        with open(path, encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None


def _yaml_problem(error):
    """What YAML found wrong, on one line: the problem and its place, none of the text around it."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return " ".join(str(error).split())
    return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"


def _read_with_bases(path, chain):
    """The settings of YAML file `path`, laid over those of its `base` file (recursively)."""
    path = os.path.normpath(path)
    if os.path.realpath(path) in map(os.path.realpath, chain):
        raise ConfigError(f"{path}: 'base' files form a cycle: {' -> '.join([*chain, path])}")
    try:
        data = read_yaml(path)
    except ConfigError as error:
        raise ConfigError(f"{chain[-1]}: {error}" if chain else str(error)) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        what = f"{chain[-1]}: its base file {path} is" if chain else f"{path}:"
        raise ConfigError(f"{what} not a YAML mapping of sections (the top level is a {type(data).__name__})")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or "\0" in base:
        raise ConfigError(f"{path}: 'base' must be the path of another config file, got {shown(base)}")
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
    """Builds dataclass `cls` from a nested dict, checking every key, type, range (`ranged`) and relation
    (`RELATIONS`); a ConfigError names the file (`source`) and the dotted key."""
    if not isinstance(data, dict):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {where} must be a mapping, got {shown(data)}")
    data = _renamed_keys_moved(data, prefix, source)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key '{prefix}{cut(str(key))}' (known keys here: {known})")
    values = {}
    for name, field in fields.items():
        if name not in data:
            continue
        key = prefix + name
        field_type = typing.get_type_hints(cls)[name]
        if dataclasses.is_dataclass(field_type):
            values[name] = from_dict(field_type, data[name], source, key + ".")
        elif "steps" in field.metadata:
            values[name] = _steps(data[name], field.metadata["steps"], key, source)
        else:
            values[name] = _convert(data[name], field_type, key, source, field.metadata.get("range"))
        allowed = choices().get(key)
        if allowed is not None and values[name] not in allowed:
            raise ConfigError(f"{source}: '{key}' must be one of {allowed}, got {shown(values[name])}")
    try:
        section = cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    for relation in RELATIONS.get(cls, ()):
        if not relation.holds(section):
            settings = ", ".join(f"'{prefix}{key}' = {shown(getattr(section, key))}" for key in relation.keys)
            raise ConfigError(f"{source}: {settings}: {relation.text}")
    return section


def _steps(value, kinds, key, source):
    """A list of typed steps (`data.augmentation`), None as None: each a mapping of its `type`, one of `kinds`
    ({type: dataclass}), and that dataclass's settings."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{source}: '{key}' must be a list of steps (mappings with a type), got {shown(value)}")
    steps = []
    for index, step in enumerate(value):
        where = f"{key}[{index}]"
        kind = step.get("type") if isinstance(step, dict) else None
        if not isinstance(kind, str) or kind not in kinds:
            got = f"got {shown(kind)}" if isinstance(step, dict) else f"the step is {shown(step)}"
            raise ConfigError(f"{source}: '{where}.type' must be one of {tuple(kinds)}, {got}")
        steps.append(from_dict(kinds[kind], step, source, where + "."))
    return tuple(steps)


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


def flattened(tree, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}: the settings of a nested dict (as `to_dict` gives) by dotted key."""
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves.update(flattened(value, f"{prefix}{key}."))
        else:
            leaves[prefix + key] = value
    return leaves


def nested(settings):
    """{"a.b": 1} -> {"a": {"b": 1}}: `flattened` undone."""
    tree = {}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def dump_config(config, path, comments=()):
    """Writes `config` as YAML that `load_config` reads back to an equal config, headed by `comments` (lines)."""
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(f"# {' '.join(line.split())}\n" for line in comments)
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
        raise ConfigError(f"override {shown(override)} is not of the form dotted.key=value")
    *parents, leaf = key.split(".")
    node = data
    for parent in parents:
        node = node.setdefault(parent, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {shown(override)}: '{parent}' is not a section")
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {shown(override)}: cannot parse the value: {_yaml_problem(error)}") from None
    except RecursionError:
        raise ConfigError(f"override {shown(override)}: the value is nested too deeply to read") from None


def _convert(value, field_type, key, source, interval=None):
    """`value` as `field_type` (int, float, bool, str, Optional[...] or tuple[...]), its numbers in `interval` (if
    given), or a ConfigError."""
    origin = typing.get_origin(field_type)
    arguments = typing.get_args(field_type)
    if origin in (typing.Union, types.UnionType) and type(None) in arguments:
        if value is None:
            return None
        (field_type,) = [argument for argument in arguments if argument is not type(None)]
        return _convert(value, field_type, key, source, interval)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {shown(value)}")
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            item_types = [arguments[0]] * len(value)
        else:
            if len(value) != len(arguments):
                raise ConfigError(f"{source}: '{key}' must have {len(arguments)} items, got {shown(value)}")
            item_types = arguments
        return tuple(_convert(item, item_type, f"{key}[{i}]", source, interval)
                     for i, (item, item_type) in enumerate(zip(value, item_types)))
    if field_type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {shown(value)}")
        return value
    if field_type is str:
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"{source}: '{key}' must be a string without NUL characters, got {shown(value)}")
        return value
    if field_type is int:
        number = _integral(value)
        if number is None:
            raise ConfigError(f"{source}: '{key}' must be an integer, got {shown(value)}")
    elif field_type is float:
        if isinstance(value, str) and _YAML_1_1_MISSES.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: '{key}' must be a number, got {shown(value)}")
        number = float(value)
    else:
        raise TypeError(f"unsupported config field type {field_type} for '{key}'")
    if interval is not None and number not in interval:
        raise ConfigError(f"{source}: '{key}' must be in {interval.text}, got {shown(value)}")
    return number


# Numbers that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot ("1e-5", "50e6").
_YAML_1_1_MISSES = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")


def _integral(value):
    """`value` as an int if it is one: 50000000, 5e7 or 50e6 (YAML reads `50e6` as a string, `5.0e+7` as a float);
    else None (booleans, fractions, text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _YAML_1_1_MISSES.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return None
