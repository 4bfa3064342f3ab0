"""Loads `keras.applications` ResNet weights (MSRA / Caffe-style ResNet v1) into a `ResNetBackbone`."""

import math

import keras
import numpy as np

# Blocks in conv2_x .. conv5_x -> depth, and the keras.applications constructor of each depth.
_DEPTH_BY_BLOCK_COUNTS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
_APPLICATIONS = {
    50: keras.applications.ResNet50,
    101: keras.applications.ResNet101,
    152: keras.applications.ResNet152,
}


def load_keras_applications_weights(backbone, source=None):
    """Copies the weights of a `keras.applications.ResNet50/101/152` into `backbone`, in place.

    keras.applications convs have biases and ours do not: each conv bias `b` is folded into the
    following norm by `moving_mean' = moving_mean - b`, which gives the same outputs for frozen BN and
    for `BatchNormalization` in inference mode. The backbone must match what the weights were trained
    with: same depth, `stride_in_1x1=True`, `preprocessing="caffe"`, and `bn_epsilon` equal to the
    source's (1.001e-5 in keras.applications).

    Args:
        backbone: a `ResNetBackbone` of depth 50, 101 or 152.
        source: a built `keras.applications.ResNet50/101/152(include_top=False)` model, or None to build
            the matching one with `weights="imagenet"` (downloads the weights).

    Raises:
        ValueError: the backbone or the source does not match (the message says what to change).
    """
    _check_backbone(backbone)
    if source is None:
        source = _APPLICATIONS[backbone.depth](include_top=False, weights="imagenet")

    source_depth = _source_depth(source)
    if source_depth != backbone.depth:
        raise ValueError(
            f"Depth mismatch: the source is a ResNet-{source_depth}, the backbone a ResNet-{backbone.depth}."
        )
    source_epsilon = _source_epsilon(source)
    if not math.isclose(backbone.bn_epsilon, source_epsilon, rel_tol=1e-9):
        raise ValueError(
            f"The source's batch norms use epsilon={source_epsilon!r}: build the backbone with "
            f"bn_epsilon={source_epsilon!r} (it has {backbone.bn_epsilon!r})."
        )
    _copy_weights(source, backbone)


def _check_backbone(backbone):
    """ValueError saying what to change where `backbone` cannot take keras.applications weights."""
    if backbone.depth not in _APPLICATIONS:
        raise ValueError(
            f"keras.applications has ResNet weights for depths {sorted(_APPLICATIONS)} only, "
            f"got a ResNet-{backbone.depth} backbone."
        )
    if backbone.width_multiplier != 1.0:
        raise ValueError(
            f"keras.applications ResNets have full-width convs: build the backbone with width_multiplier=1.0, "
            f"not {backbone.width_multiplier}."
        )
    if not backbone.stride_in_1x1:
        raise ValueError(
            "keras.applications ResNets put the stride on the first 1x1 conv: build the backbone with "
            "stride_in_1x1=True."
        )
    if backbone.preprocessing != "caffe":
        raise ValueError(
            "keras.applications ResNet weights expect Caffe preprocessing (BGR, mean subtraction): build the "
            f'backbone with preprocessing="caffe", not {backbone.preprocessing!r}.'
        )


def _copy_weights(source, backbone):
    """Each conv's kernel and its batch norm's statistics from `source` into `backbone` (a conv bias folded into the
    norm's mean)."""
    source_convs = _conv_layers(source)
    target_convs = _conv_layers(backbone)
    if set(source_convs) != set(target_convs):
        raise ValueError(
            "The source is not a keras.applications ResNet v1: conv layers differ, "
            f"only in the source: {sorted(set(source_convs) - set(target_convs))}, "
            f"only in the backbone: {sorted(set(target_convs) - set(source_convs))}."
        )
    for conv_name, target_conv in target_convs.items():
        source_conv = source_convs[conv_name]
        norm_name = conv_name.removesuffix("_conv") + "_bn"
        source_norm = source.get_layer(norm_name)
        target_norm = backbone.get_layer(norm_name)
        kernel = keras.ops.convert_to_numpy(source_conv.kernel)
        bias = keras.ops.convert_to_numpy(source_conv.bias) if source_conv.use_bias else 0.0
        target_conv.kernel.assign(kernel)
        target_norm.gamma.assign(keras.ops.convert_to_numpy(source_norm.gamma))
        target_norm.beta.assign(keras.ops.convert_to_numpy(source_norm.beta))
        moving_mean = keras.ops.convert_to_numpy(source_norm.moving_mean).astype(np.float64) - bias
        target_norm.moving_mean.assign(moving_mean.astype(np.float32))
        target_norm.moving_variance.assign(keras.ops.convert_to_numpy(source_norm.moving_variance))


def _source_depth(source):
    block_counts = tuple(
        sum(1 for layer in source.layers if layer.name.startswith(f"conv{stage}_block") and layer.name.endswith("_out"))
        for stage in range(2, 6)
    )
    if block_counts not in _DEPTH_BY_BLOCK_COUNTS:
        raise ValueError(f"The source is not a keras.applications ResNet50/101/152 (blocks per stage: {block_counts}).")
    return _DEPTH_BY_BLOCK_COUNTS[block_counts]


def _source_epsilon(source):
    epsilons = {layer.epsilon for layer in source.layers if isinstance(layer, keras.layers.BatchNormalization)}
    if len(epsilons) != 1:
        raise ValueError(f"Expected one batch norm epsilon in the source, found {sorted(epsilons)}.")
    return epsilons.pop()


def _conv_layers(model):
    return {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
