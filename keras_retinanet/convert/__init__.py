"""Weights of other frameworks in our models: torchvision's COCO RetinaNets and ImageNet ResNets."""

from keras_retinanet.convert.torchvision import (
    COCO_CATEGORY_NAMES,
    convert_torchvision_retinanet,
    load_torchvision_resnet_weights,
    torchvision_config,
    torchvision_resnet_depth,
)

__all__ = [
    "COCO_CATEGORY_NAMES",
    "convert_torchvision_retinanet",
    "load_torchvision_resnet_weights",
    "torchvision_config",
    "torchvision_resnet_depth",
]
