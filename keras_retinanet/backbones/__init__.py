from keras_retinanet.backbones.keras_applications import load_keras_applications_weights
from keras_retinanet.backbones.resnet import ResNetBackbone

__all__ = ["ResNetBackbone", "load_keras_applications_weights"]
