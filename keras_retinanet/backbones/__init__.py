from keras_retinanet.backbones.keras_applications import KerasApplicationsBackbone
from keras_retinanet.backbones.resnet import ResNetBackbone
from keras_retinanet.backbones.resnet_weights import load_keras_applications_weights

# `model.backbone.type` -> the backbone class it builds.
BACKBONES = {"resnet": ResNetBackbone, "keras_applications": KerasApplicationsBackbone}

__all__ = ["BACKBONES", "KerasApplicationsBackbone", "ResNetBackbone", "load_keras_applications_weights"]
