"""Tiny detector pieces for fast tests: a few-thousand-parameter backbone and RetinaNet."""

import keras

from keras_retinanet import RetinaNet
from keras_retinanet.layers import FeaturePyramid, RetinaNetHead


def tiny_backbone(widths=(8, 16, 16, 32, 32)):
    """A plain conv backbone with the ResNet strides: images -> [C3, C4, C5] (strides 8, 16, 32)."""
    images = keras.Input(shape=(None, None, 3))
    x = keras.layers.Rescaling(1.0 / 255)(images)
    features = []
    for i, width in enumerate(widths):
        x = keras.layers.ZeroPadding2D(1)(x)
        x = keras.layers.Conv2D(width, 3, strides=2, activation="relu")(x)
        if i >= 2:
            features.append(x)
    return keras.Model(images, features, name="tiny_backbone")


def tiny_retinanet(num_classes=3, filters=16, num_convs=1, **kwargs):
    return RetinaNet(
        backbone=tiny_backbone(),
        num_classes=num_classes,
        feature_pyramid=FeaturePyramid(filters=filters, name="feature_pyramid"),
        classification_head=RetinaNetHead(
            num_classes, filters=filters, num_convs=num_convs, prior_probability=0.01, name="classification_head"
        ),
        box_head=RetinaNetHead(4, filters=filters, num_convs=num_convs, name="box_head"),
        **kwargs,
    )


# The model section of the command-line tests' experiment files: a quarter-width ResNet-18 that trains in seconds.
TINY_MODEL_YAML = """model:
  backbone: {depth: 18, width_multiplier: 0.25, normalization: batch_norm, frozen_stages: 0,
             preprocessing: torch, weights: null}
  anchors: {sizes: [16, 32, 64, 128, 256]}
  pyramid: {filters: 16}
  heads: {filters: 16, num_convs: 1}
"""
