"""ResNet backbone returning the C3, C4, C5 feature maps (strides 8, 16, 32)."""

import functools

import keras

from keras_retinanet.backbones.resnet_weights import load_keras_applications_weights
from keras_retinanet.layers.frozen_batch_norm import FrozenBatchNormalization
from keras_retinanet.layers.image_normalization import PRESETS, ImageNormalization
from keras_retinanet.precision import dtype_policy_scope

# depth -> (block type, blocks in conv2_x .. conv5_x), He et al. 2016, Table 1.
RESNET_ARCHITECTURES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # inner width of conv2_x .. conv5_x
BOTTLENECK_EXPANSION = 4
NORMALIZATIONS = ("frozen_bn", "batch_norm")


@keras.saving.register_keras_serializable(package="keras_retinanet")
class ResNetBackbone(keras.Model):
    """ResNet-18/34/50/101/152 as a functional model: images (N, H, W, 3) -> [C3, C4, C5].

    Layer names follow `keras.applications` (`conv1_conv`, `conv2_block1_0_conv`, ...). Stride-2 convs
    and the stem max-pool pad symmetrically (explicit `ZeroPadding2D` + "valid", PyTorch semantics);
    Keras "same" would pad (0, 1) on even sizes and change the numbers of converted weights. For an
    input of H x W, Ck has ceil(H / stride) x ceil(W / stride) pixels.

    The defaults (MSRA stride placement, "caffe" preprocessing, eps 1.001e-5) are those of the keras.applications
    ImageNet weights that `weights="imagenet"` loads.

    Args:
        depth: 18, 34 (basic blocks) or 50, 101, 152 (bottleneck blocks).
        stride_in_1x1: bottlenecks only. True puts the stride of a downsampling block on its first 1x1
            conv (MSRA / Detectron / keras.applications), False on its 3x3 (torchvision "v1.5").
        normalization: "frozen_bn" (`FrozenBatchNormalization`, a fixed affine: the paper's choice with
            pretrained weights) or "batch_norm" (trainable `keras.layers.BatchNormalization`: use it to train
            from scratch, where random weights with identity norms would let activations grow block by block).
        bn_epsilon: epsilon of every normalization layer.
        frozen_stages: number of leading stages made non-trainable, 0..5; the stem (conv1 and its
            norm) is stage 1, conv2_x stage 2, ..., conv5_x stage 5 (detectron2's FREEZE_AT).
        preprocessing: "torch", "caffe", "tf" (see `ImageNormalization.preset`) to take RGB images in
            [0, 255], or None to use the input as is.
        weights: None (random init), "imagenet" (keras.applications weights, see
            `load_keras_applications_weights`) or a path to a `.weights.h5` file. Not kept in the config:
            saved models carry their weights.
        width_multiplier: scales the channels of every conv (0.5 halves them and quarters the compute), for
            small, fast models such as the demo's; pretrained weights need 1.0.
        name: model name, default "resnet{depth}".
    """

    def __init__(
        self,
        depth=50,
        stride_in_1x1=True,
        normalization="frozen_bn",
        bn_epsilon=1.001e-5,
        frozen_stages=2,
        preprocessing="caffe",
        weights=None,
        width_multiplier=1.0,
        name=None,
    ):
        _check_arguments(depth, normalization, bn_epsilon, frozen_stages, preprocessing, width_multiplier)
        images = keras.Input(shape=(None, None, 3), name="images")
        x = images
        if preprocessing is not None:
            x = ImageNormalization.preset(preprocessing, name="image_normalization")(x)
        norm = functools.partial(_norm_layer, normalization, bn_epsilon)
        x = _stem(x, _scaled(64, width_multiplier), norm, trainable=frozen_stages < 1)
        stage_outputs = _stages(x, depth, stride_in_1x1, norm, frozen_stages, width_multiplier)
        super().__init__(inputs=images, outputs=stage_outputs[1:], name=name or f"resnet{depth}")
        self.depth = depth
        self.stride_in_1x1 = stride_in_1x1
        self.normalization = normalization
        self.bn_epsilon = bn_epsilon
        self.frozen_stages = frozen_stages
        self.preprocessing = preprocessing
        self.width_multiplier = float(width_multiplier)

        if weights == "imagenet":
            load_keras_applications_weights(self)
        elif weights is not None:
            self.load_weights(weights)

    @property
    def output_channels(self):
        """Channels of (C3, C4, C5)."""
        block_type, _ = RESNET_ARCHITECTURES[self.depth]
        expansion = BOTTLENECK_EXPANSION if block_type == "bottleneck" else 1
        return tuple(_scaled(width, self.width_multiplier) * expansion for width in STAGE_WIDTHS[1:])

    def get_config(self):
        return {
            "depth": self.depth,
            "stride_in_1x1": self.stride_in_1x1,
            "normalization": self.normalization,
            "bn_epsilon": self.bn_epsilon,
            "frozen_stages": self.frozen_stages,
            "preprocessing": self.preprocessing,
            "weights": None,
            "width_multiplier": self.width_multiplier,
            "name": self.name,
            "dtype_policy": self.dtype_policy.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return backbone_from_config(cls, config)


def backbone_from_config(cls, config):
    """A backbone class `cls` built from its `get_config()`: under the stored dtype policy (the layers are created in
    `__init__`), frozen whole where it was (`train.freeze`); `trainable` True is not set, as it would unfreeze the
    frozen stages and norms too."""
    config = dict(config)
    trainable = config.pop("trainable", True)
    with dtype_policy_scope(config.pop("dtype_policy", None)):
        backbone = cls(**config)
    if not trainable:
        backbone.trainable = False
    return backbone



def _check_arguments(depth, normalization, bn_epsilon, frozen_stages, preprocessing, width_multiplier):
    """ValueError naming the first `ResNetBackbone` argument out of range."""
    if depth not in RESNET_ARCHITECTURES:
        raise ValueError(f"ResNetBackbone: depth must be one of {sorted(RESNET_ARCHITECTURES)}, got {depth!r}.")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"ResNetBackbone: normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    if bn_epsilon < 0:
        raise ValueError(f"ResNetBackbone: bn_epsilon must be >= 0, got {bn_epsilon!r}.")
    if frozen_stages not in range(6):
        raise ValueError(f"ResNetBackbone: frozen_stages must be an integer in 0..5, got {frozen_stages!r}.")
    if preprocessing is not None and preprocessing not in PRESETS:
        raise ValueError(
            f"ResNetBackbone: preprocessing must be one of {sorted(PRESETS)} or None, got {preprocessing!r}."
        )
    if width_multiplier <= 0:
        raise ValueError(f"ResNetBackbone: width_multiplier must be > 0, got {width_multiplier!r}.")


def _stages(x, depth, stride_in_1x1, norm, frozen_stages, width_multiplier):
    """The outputs of conv2_x .. conv5_x (C2-C5) on the stem's output `x`."""
    block_type, block_counts = RESNET_ARCHITECTURES[depth]
    block = _bottleneck_block if block_type == "bottleneck" else _basic_block
    stage_outputs = []
    widths = [_scaled(width, width_multiplier) for width in STAGE_WIDTHS]
    for stage, width, num_blocks in zip(range(2, 6), widths, block_counts):
        for index in range(1, num_blocks + 1):
            x = block(
                x,
                width,
                strides=2 if index == 1 and stage > 2 else 1,
                stride_in_1x1=stride_in_1x1,
                norm=norm,
                trainable=stage > frozen_stages,
                name=f"conv{stage}_block{index}",
            )
        stage_outputs.append(x)
    return stage_outputs


def _norm_layer(normalization, epsilon, name, trainable):
    if normalization == "frozen_bn":
        return FrozenBatchNormalization(epsilon=epsilon, name=name, trainable=trainable)
    return keras.layers.BatchNormalization(epsilon=epsilon, name=name, trainable=trainable)


def _conv(x, filters, kernel_size, strides, name, trainable):
    """Bias-free conv `{name}_conv`; kernels > 1 get symmetric zero padding `{name}_pad` (PyTorch style)."""
    if kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
        trainable=trainable,
    )(x)


def _conv_norm(x, filters, kernel_size, strides, norm, name, trainable, relu=True):
    x = _conv(x, filters, kernel_size, strides, name, trainable)
    x = norm(f"{name}_bn", trainable)(x)
    if relu:
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _scaled(width, multiplier):
    return max(1, int(round(width * multiplier)))


def _stem(x, width, norm, trainable):
    x = _conv_norm(x, width, 7, 2, norm, "conv1", trainable)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros act as -inf after the ReLU
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="pool1_pool")(x)


def _shortcut(x, filters, strides, norm, name, trainable):
    """Identity, or a 1x1 projection `{name}_0_conv` when the shape changes."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return _conv_norm(x, filters, 1, strides, norm, f"{name}_0", trainable, relu=False)


def _basic_block(x, width, strides, stride_in_1x1, norm, trainable, name):
    """Two 3x3 convs (ResNet-18/34); `stride_in_1x1` does not apply."""
    shortcut = _shortcut(x, width, strides, norm, name, trainable)
    x = _conv_norm(x, width, 3, strides, norm, f"{name}_1", trainable)
    x = _conv_norm(x, width, 3, 1, norm, f"{name}_2", trainable, relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def _bottleneck_block(x, width, strides, stride_in_1x1, norm, trainable, name):
    """1x1 (width) -> 3x3 (width) -> 1x1 (4 * width), with the stride on the first 1x1 or the 3x3."""
    shortcut = _shortcut(x, BOTTLENECK_EXPANSION * width, strides, norm, name, trainable)
    x = _conv_norm(x, width, 1, strides if stride_in_1x1 else 1, norm, f"{name}_1", trainable)
    x = _conv_norm(x, width, 3, 1 if stride_in_1x1 else strides, norm, f"{name}_2", trainable)
    x = _conv_norm(x, BOTTLENECK_EXPANSION * width, 1, 1, norm, f"{name}_3", trainable, relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)
