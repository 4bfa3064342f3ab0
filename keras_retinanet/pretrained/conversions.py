"""What each kind of published file becomes: torchvision RetinaNets a `.keras` detector, ImageNet ResNets (torchvision's
or keras.applications') the `.weights.h5` of our `ResNetBackbone` built as they were trained, with the
`model.backbone` settings that this needs."""

import typing

import keras

from keras_retinanet.backbones import ResNetBackbone, load_keras_applications_weights
from keras_retinanet.config import BackboneConfig
from keras_retinanet.convert.pth import read_state_dict
from keras_retinanet.convert.torchvision import (
    TORCHVISION_BN_EPSILON,
    convert_torchvision_retinanet,
    load_torchvision_resnet_weights,
)

# The `ResNetBackbone` settings (besides depth) of the ImageNet ResNets: torchvision's, and keras.applications' (the
# defaults of `model.backbone`).
TORCHVISION_RESNET = {"stride_in_1x1": False, "preprocessing": "torch", "bn_epsilon": TORCHVISION_BN_EPSILON}
_DEFAULTS = BackboneConfig()
KERAS_RESNET = {name: getattr(_DEFAULTS, name) for name in ("stride_in_1x1", "preprocessing", "bn_epsilon")}


class Conversion(typing.NamedTuple):
    """`convert(weights, published_path, output_path)` writes the converted file, whose name ends with `suffix`;
    `backbone` is None for detectors, else the `model.backbone` settings (besides depth and weights) they need."""

    suffix: str
    convert: typing.Callable
    backbone: typing.Optional[dict]


def _torchvision_retinanet(weights, published, output):
    convert_torchvision_retinanet(read_state_dict(published), weights.variant).save(output)


def _torchvision_resnet(weights, published, output):
    backbone = ResNetBackbone(weights.depth, **TORCHVISION_RESNET)
    load_torchvision_resnet_weights(backbone, read_state_dict(published))
    backbone.save_weights(output)


def _keras_resnet(weights, published, output):
    source = getattr(keras.applications, f"ResNet{weights.depth}")(include_top=False, weights=published)
    backbone = ResNetBackbone(weights.depth, **KERAS_RESNET)
    load_keras_applications_weights(backbone, source)
    backbone.save_weights(output)


CONVERSIONS = {
    "torchvision_retinanet": Conversion(".keras", _torchvision_retinanet, None),
    "torchvision_resnet": Conversion(".weights.h5", _torchvision_resnet, TORCHVISION_RESNET),
    "keras_resnet": Conversion(".weights.h5", _keras_resnet, KERAS_RESNET),
}
