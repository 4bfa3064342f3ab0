"""torchvision weights in our Keras models: the COCO RetinaNets (`retinanet_resnet50_fpn`, `_v2`) and ImageNet ResNets.

`convert_torchvision_retinanet` builds the detector torchvision's weights were trained as (through
`build_retinanet`, so that the config stored in the model rebuilds it) and copies every tensor of a state dict into
it; the result gives torchvision's detections up to float rounding, and `bin/predict`, `bin/evaluate` and
`bin/export` use it as they use a model from `bin/train`. `load_torchvision_resnet_weights` maps an ImageNet ResNet
the same way, for fine-tuning.

Nothing here imports torch: state dicts may hold torch tensors (read with `.detach().cpu().numpy()`) or numpy arrays.
"""

import math
import re

import numpy as np

from keras_retinanet.backbones.resnet import RESNET_ARCHITECTURES
from keras_retinanet.config import (
    AnchorConfig,
    BackboneConfig,
    BoxLossConfig,
    DataConfig,
    DecoderConfig,
    ExperimentConfig,
    HeadConfig,
    ModelConfig,
    PyramidConfig,
    to_dict,
)
from keras_retinanet.models import build_retinanet

VARIANTS = ("v1", "v2")

# torchvision's COCO label space: output index = COCO category id, 0 = background, "N/A" = the 10 unused ids
# (torchvision.models._meta._COCO_CATEGORIES).
COCO_CATEGORY_NAMES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

# torchvision ImageNet ResNets: BatchNorm eps.
TORCHVISION_BN_EPSILON = 1e-5

_CLASS_LOGITS_KEY = "head.classification_head.cls_logits.weight"
_GROUP_NORM_KEY = "head.classification_head.conv.0.1.weight"
# Keys of older torchvision releases -> today's: head convs `conv.{0,2,4,6}` -> `conv.{i}.0`, FPN blocks
# `inner_blocks.{i}` / `layer_blocks.{i}` -> `....{i}.0` (what torchvision's own `_load_from_state_dict` renames).
_OLD_HEAD_KEY = re.compile(r"^(head\.(?:classification|regression)_head\.conv\.)(\d+)\.(weight|bias)$")
_OLD_FPN_KEY = re.compile(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$")
# Bookkeeping of torch's BatchNorm2d (v2 backbones, ImageNet ResNets) and the classifier of ImageNet ResNets.
_IGNORED_KEY = re.compile(r"(^|\.)num_batches_tracked$")
_IMAGENET_CLASSIFIER_KEYS = ("fc.weight", "fc.bias")


def torchvision_config(variant):
    """The `ExperimentConfig` of torchvision's `retinanet_resnet50_fpn` ("v1") or `retinanet_resnet50_fpn_v2` ("v2").

    v1: ResNet-50 with the stride on the 3x3 conv and frozen BN with eps 0 (torchvision sets it for the COCO
    weights), P6 from P5, L1 box loss. v2: frozen BN with eps 1e-5 (its BatchNorm2d in eval mode), P6 from C5,
    GroupNorm(32) in the heads without conv biases, GIoU box loss. Both: torchvision's anchors, score > 0.05, top 1000 a
    level, NMS 0.5, 300 detections; images normalised, resized (shorter side 800, longer <= 1333) and padded to 32
    as torchvision's `GeneralizedRCNNTransform` does.
    """
    if variant not in VARIANTS:
        raise ValueError(f"torchvision RetinaNet variant must be one of {VARIANTS}, got {variant!r}")
    v1 = variant == "v1"
    model = ModelConfig(
        backbone=BackboneConfig(
            depth=50,
            stride_in_1x1=False,
            normalization="frozen_bn",
            bn_epsilon=0.0 if v1 else TORCHVISION_BN_EPSILON,
            frozen_stages=2,  # torchvision's trainable_backbone_layers=3: conv1 and layer1 frozen
            preprocessing="torch",
            weights=None,
        ),
        anchors=AnchorConfig(mode="torchvision"),
        pyramid=PyramidConfig(p6_input="p5" if v1 else "c5"),
        heads=HeadConfig(normalization=None if v1 else "group_norm"),
        box_loss=BoxLossConfig(type="l1" if v1 else "giou"),
        decoder=DecoderConfig(max_detections=300),
    )
    data = DataConfig(min_size=800, max_size=1333, size_divisor=32, resize_rule="torchvision")
    return ExperimentConfig(model=model, data=data)


def convert_torchvision_retinanet(source, variant=None, class_names=None):
    """Our `RetinaNet` with the weights of a torchvision RetinaNet-ResNet50-FPN.

    Args:
        source: a torchvision `RetinaNet` module, or its state dict (torch tensors or numpy arrays), with today's or
            older torchvision key names.
        variant: "v1", "v2", or None to tell from the state dict (v2 has GroupNorm in its heads); a given variant
            that the state dict contradicts is an error.
        class_names: one name per class output; default: torchvision's 91 COCO names when there are 91 outputs.

    Returns a `RetinaNet` whose class index is torchvision's label (for COCO weights: the COCO category id), with
    `metadata` {"class_names", "category_ids" (0..K-1), "config"} as `bin/train` stores it.

    Raises:
        ValueError: missing or unexpected keys (listed), a tensor of the wrong shape (named), a wrong variant.
    """
    state = _numpy_state(source.state_dict() if hasattr(source, "state_dict") else source)
    state = {_current_key(key): value for key, value in state.items()}
    detected = "v2" if _GROUP_NORM_KEY in state else "v1"
    if variant is not None and variant != detected:
        evidence = "has" if detected == "v2" else "lacks"
        raise ValueError(
            f"the state dict is a torchvision RetinaNet {detected} (it {evidence} the GroupNorm key "
            f"'{_GROUP_NORM_KEY}'), not {variant}"
        )
    if _CLASS_LOGITS_KEY not in state:
        raise ValueError(f"not a torchvision RetinaNet state dict: missing keys: ['{_CLASS_LOGITS_KEY}']")
    config = torchvision_config(detected)
    anchors_per_location = len(config.model.anchors.scales) * len(config.model.anchors.aspect_ratios)
    num_outputs = state[_CLASS_LOGITS_KEY].shape[0]
    if num_outputs % anchors_per_location:
        raise ValueError(
            f"'{_CLASS_LOGITS_KEY}' has {num_outputs} outputs, not a multiple of {anchors_per_location} anchors"
        )
    num_classes = num_outputs // anchors_per_location
    if class_names is None:
        if num_classes != len(COCO_CATEGORY_NAMES):
            raise ValueError(
                f"the state dict has {num_classes} classes, not COCO's 91: pass their class_names (--class_names)"
            )
        class_names = COCO_CATEGORY_NAMES
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names for a state dict with {num_classes} classes")

    model = build_retinanet(config.model, num_classes)
    _assign(retinanet_targets(model), state, "torchvision RetinaNet")
    model.metadata = {
        "class_names": [str(name) for name in class_names],
        "category_ids": list(range(num_classes)),
        "config": to_dict(config),
    }
    return model


def load_torchvision_resnet_weights(backbone, state_dict):
    """Copies a torchvision ImageNet ResNet (`torchvision.models.resnet50(weights=...).state_dict()`, any depth) into
    `backbone`, a `ResNetBackbone`, in place. Its classifier (`fc.*`) is dropped.

    The backbone must be built as torchvision's: same depth, `stride_in_1x1=False`, `preprocessing="torch"`,
    `bn_epsilon=1e-5`, `width_multiplier=1.0`; `normalization` may be either.

    Raises:
        ValueError: the backbone does not match (the message says what to change), or keys are missing or unexpected.
    """
    state = _numpy_state(state_dict)
    depth = torchvision_resnet_depth(state)
    if backbone.depth != depth:
        raise ValueError(f"the state dict is a torchvision ResNet-{depth}, the backbone a ResNet-{backbone.depth}")
    required = {"preprocessing": "torch", "width_multiplier": 1.0}
    if RESNET_ARCHITECTURES[depth][0] == "bottleneck":
        required["stride_in_1x1"] = False
    for name, value in required.items():
        if getattr(backbone, name) != value:
            raise ValueError(f"torchvision ResNet weights need a backbone with {name}={value!r}, not "
                             f"{getattr(backbone, name)!r}")
    if not math.isclose(backbone.bn_epsilon, TORCHVISION_BN_EPSILON, rel_tol=1e-9):
        raise ValueError(f"torchvision ResNets' batch norms use epsilon={TORCHVISION_BN_EPSILON}: build the backbone "
                         f"with bn_epsilon={TORCHVISION_BN_EPSILON} (it has {backbone.bn_epsilon!r})")
    for key in _IMAGENET_CLASSIFIER_KEYS:
        state.pop(key, None)
    _assign(_resnet_targets(backbone, prefix=""), state, f"torchvision ResNet-{depth}")


def _numpy_state(state_dict):
    """{key: float32 numpy array} of a state dict of torch tensors or arrays, without BatchNorm's batch counters."""
    arrays = {}
    for key, value in state_dict.items():
        if _IGNORED_KEY.search(key):
            continue
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        arrays[key] = np.asarray(value, np.float32)
    return arrays


def _current_key(key):
    """Today's torchvision name of a RetinaNet state-dict key (older checkpoints name some differently)."""
    match = _OLD_HEAD_KEY.match(key)
    if match:
        prefix, index, kind = match.groups()
        return f"{prefix}{int(index) // 2}.0.{kind}"
    return _OLD_FPN_KEY.sub(r"\1.0.\2", key)


def torchvision_resnet_depth(state_dict):
    """The depth of the ResNet a torchvision ImageNet state dict holds, from its blocks per stage and block type."""
    block_counts = tuple(
        len({key.split(".")[1] for key in state_dict if key.startswith(f"layer{stage}.")}) for stage in range(1, 5)
    )
    block_type = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    for depth, architecture in RESNET_ARCHITECTURES.items():
        if architecture == (block_type, block_counts):
            return depth
    raise ValueError(
        f"not a torchvision ResNet-18/34/50/101/152 state dict ({block_type} blocks per stage: {block_counts})"
    )


def retinanet_targets(model):
    """{torchvision key: (Keras variable, is a conv kernel)} for every weight of a torchvision-layout `RetinaNet`."""
    targets = _resnet_targets(model.backbone, prefix="backbone.body.")
    pyramid = model.feature_pyramid
    for i, (lateral, output) in enumerate(zip(pyramid.lateral_convs, pyramid.output_convs)):
        targets.update(_conv_targets(lateral, f"backbone.fpn.inner_blocks.{i}.0"))
        targets.update(_conv_targets(output, f"backbone.fpn.layer_blocks.{i}.0"))
    targets.update(_conv_targets(pyramid.p6_conv, "backbone.fpn.extra_blocks.p6"))
    targets.update(_conv_targets(pyramid.p7_conv, "backbone.fpn.extra_blocks.p7"))
    for head, name, output in (
        (model.classification_head, "classification_head", "cls_logits"),
        (model.box_head, "regression_head", "bbox_reg"),
    ):
        for i, conv in enumerate(head.hidden_convs):
            targets.update(_conv_targets(conv, f"head.{name}.conv.{i}.0"))
        for i, norm in enumerate(head.norms):
            targets.update({f"head.{name}.conv.{i}.1.weight": (norm.gamma, False),
                            f"head.{name}.conv.{i}.1.bias": (norm.beta, False)})
        targets.update(_conv_targets(head.output_conv, f"head.{name}.{output}"))
    return targets


def _resnet_targets(backbone, prefix):
    """{torchvision key: (Keras variable, is a conv kernel)} of a `ResNetBackbone`: `conv1` / `bn1` for the stem,
    `layer{s-1}.{b-1}.conv{j}` / `bn{j}` for `conv{s}_block{b}_{j}`, `downsample.0` / `.1` for its `_0` shortcut."""
    targets = {}
    for layer in backbone.layers:
        if not layer.weights:
            continue
        base, _, kind = layer.name.rpartition("_")  # kind: "conv" or "bn"
        if base == "conv1":
            conv_name, norm_name = "conv1", "bn1"
        else:
            stage, block, index = re.fullmatch(r"conv(\d)_block(\d+)_(\d)", base).groups()
            module = f"layer{int(stage) - 1}.{int(block) - 1}"
            if index == "0":
                conv_name, norm_name = f"{module}.downsample.0", f"{module}.downsample.1"
            else:
                conv_name, norm_name = f"{module}.conv{index}", f"{module}.bn{index}"
        if kind == "conv":
            targets[f"{prefix}{conv_name}.weight"] = (layer.kernel, True)
        else:
            targets.update(_batch_norm_targets(layer, prefix + norm_name))
    return targets


def _batch_norm_targets(norm, key):
    return {
        f"{key}.weight": (norm.gamma, False),
        f"{key}.bias": (norm.beta, False),
        f"{key}.running_mean": (norm.moving_mean, False),
        f"{key}.running_var": (norm.moving_variance, False),
    }


def _conv_targets(conv, key):
    targets = {f"{key}.weight": (conv.kernel, True)}
    if conv.use_bias:
        targets[f"{key}.bias"] = (conv.bias, False)
    return targets


def _assign(targets, state, what):
    """Assigns `state` to `targets` after checking that the keys and every shape agree."""
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets))
    if missing or unexpected:
        raise ValueError(
            f"the state dict does not fit a {what}: missing keys: {missing}; unexpected keys: {unexpected}"
        )
    for key, (variable, is_kernel) in targets.items():
        value = state[key].transpose(2, 3, 1, 0) if is_kernel else state[key]  # conv OIHW -> HWIO
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"'{key}' has shape {list(state[key].shape)}, which does not fit the Keras weight {variable.path} "
                f"of shape {list(variable.shape)}"
            )
        variable.assign(value)
