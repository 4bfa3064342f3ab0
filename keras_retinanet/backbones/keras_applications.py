"""A `keras.applications` image classifier as a RetinaNet backbone: images -> [C3, C4, C5], found by stride.

The taps are not listed by layer name (names change between Keras versions and some are numbered at build time):
the application's output shapes are inferred once for a probe input; C5 is its output (stride 32), and C3 and C4
are what the next stage reads: of the layers at stride 8 (16) that feed one at stride 16 (32), the widest
(MobileNetV2, EfficientNet: the expansion of the block that halves the resolution, as SSDLite takes it; ConvNeXt:
the downsampling's normalised input; VGG: the last conv before the pool).
"""

import warnings

import keras
import tensorflow as tf

from keras_retinanet.errors import ModelError
from keras_retinanet.layers.image_normalization import ImageNormalization
from keras_retinanet.backbones.resnet import backbone_from_config

# The applications it builds -> the `ImageNormalization` preset their ImageNet weights expect of [0, 255] RGB, or
# None where the application normalises such images itself (its `include_preprocessing`).
APPLICATIONS = {
    "MobileNet": "tf",
    "MobileNetV2": "tf",
    "MobileNetV3Small": None,
    "MobileNetV3Large": None,
    **{f"EfficientNetB{index}": None for index in range(8)},
    **{f"EfficientNetV2{size}": None for size in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    **{f"ConvNeXt{size}": None for size in ("Tiny", "Small", "Base", "Large", "XLarge")},
    "DenseNet121": "torch",
    "DenseNet169": "torch",
    "DenseNet201": "torch",
    "VGG16": "caffe",
    "VGG19": "caffe",
    "ResNet50V2": "tf",
    "ResNet101V2": "tf",
    "ResNet152V2": "tf",
}
# The applications with a width multiplier (their `alpha`).
WIDTH_SCALABLE = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large")
NORMALIZATIONS = ("frozen_bn", "batch_norm")
TAP_STRIDES = (8, 16, 32)
# The moving-statistics momentum of trainable batch norms, as our ResNet's (Keras' default). Some applications build
# theirs with 0.999 (MobileNetV2, MobileNetV3): from scratch, a short run leaves those statistics far from the
# features' (MobileNetV2 at 800 steps: AP 0 at inference, its training loss falling).
BATCH_NORM_MOMENTUM = 0.99
# The probe input's (height, width): multiples of 32 whose two sides differ, so that no size is taken for another.
_PROBE_SIZE = (256, 320)


@keras.saving.register_keras_serializable(package="keras_retinanet")
class KerasApplicationsBackbone(keras.Model):
    """`keras.applications.<name>` without its classifier, as a functional model: images (N, H, W, 3) RGB in
    [0, 255] -> [C3, C4, C5] (strides 8, 16, 32; the taps found by stride, see the module).

    Ck has ceil(H / stride) x ceil(W / stride) pixels, as the anchors expect: the applications' own padding gives
    other sizes for sides that are not multiples of 32, so the input is padded at the bottom and right to such
    multiples and the features cropped (no change where the sides are multiples of 32, as `data.size_divisor` makes
    them).

    Args:
        name: the application, one of `APPLICATIONS` (also this model's name).
        normalization: "frozen_bn": every `BatchNormalization` of the application is frozen (its statistics and
            affine kept, inference mode: the paper's choice with pretrained weights and small batches);
            "batch_norm": trainable, to train from scratch (moving statistics at `BATCH_NORM_MOMENTUM`).
        frozen_stages: the leading stages made non-trainable, 0..5: stage k ends at the last layer at stride 2^k (the
            C_k tap for k >= 3), as `ResNetBackbone.frozen_stages` counts them.
        weights: None (random), "imagenet" (Keras' own download, cached in ~/.keras/models) or the path of the
            application's weights file without its top (what that download writes, or `save_weights` of
            `keras.applications.<name>(include_top=False)`). Not kept in the config: saved models carry their
            weights.
        width_multiplier: the application's `alpha` (`WIDTH_SCALABLE` only; ImageNet weights exist for some values,
            as Keras says); 1 for the others.
    """

    def __init__(self, name="MobileNetV2", normalization="frozen_bn", frozen_stages=0, weights=None,
                 width_multiplier=1.0, **kwargs):
        _check_arguments(name, normalization, frozen_stages, width_multiplier)
        application = _application(name, weights, width_multiplier)
        taps, stage_ends = _taps_and_stage_ends(application)
        for index, layer in enumerate(application.operations):
            if isinstance(layer, keras.layers.Layer):
                layer.trainable = index > stage_ends[frozen_stages] and not (
                    normalization == "frozen_bn" and isinstance(layer, keras.layers.BatchNormalization))
            if normalization == "batch_norm" and isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BATCH_NORM_MOMENTUM
        features = keras.Model(application.inputs, [layer.output for layer in taps], name=f"{name}_features")
        images = keras.Input(shape=(None, None, 3), name="images")
        x = images
        if APPLICATIONS[name] is not None:
            x = ImageNormalization.preset(APPLICATIONS[name], name="image_normalization")(x)
        x = PadToMultiple(TAP_STRIDES[-1], name="pad_to_stride")(x)
        outputs = [CropToStride(stride, name=f"c{level}")([feature, images])
                   for level, stride, feature in zip((3, 4, 5), TAP_STRIDES, features(x))]
        super().__init__(inputs=images, outputs=outputs, name=name, **kwargs)
        self.normalization = normalization
        self.frozen_stages = frozen_stages
        self.width_multiplier = float(width_multiplier)
        self.taps = tuple(layer.name for layer in taps)

    @property
    def output_channels(self):
        """Channels of (C3, C4, C5)."""
        return tuple(int(output.shape[-1]) for output in self.outputs)

    def get_config(self):
        return {
            "name": self.name,
            "normalization": self.normalization,
            "frozen_stages": self.frozen_stages,
            "weights": None,
            "width_multiplier": self.width_multiplier,
            "dtype_policy": self.dtype_policy.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return backbone_from_config(cls, config)


@keras.saving.register_keras_serializable(package="keras_retinanet")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads images at the bottom and right to sides that are multiples of `multiple`."""

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        return tf.pad(images, [[0, 0], [0, -height % self.multiple], [0, -width % self.multiple], [0, 0]])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="keras_retinanet")
class CropToStride(keras.layers.Layer):
    """[features, images] -> the features' top-left ceil(H / stride) x ceil(W / stride) of images of H x W."""

    def __init__(self, stride, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, inputs):
        features, images = inputs
        size = -(-tf.shape(images)[1:3] // self.stride)
        return features[:, :size[0], :size[1]]

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], None, None, input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


def _check_arguments(name, normalization, frozen_stages, width_multiplier):
    """ValueError naming the first `KerasApplicationsBackbone` argument out of range."""
    if name not in APPLICATIONS:
        raise ValueError(f"KerasApplicationsBackbone: name must be one of {sorted(APPLICATIONS)}, got {name!r}.")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"KerasApplicationsBackbone: normalization must be one of {NORMALIZATIONS}, got "
                         f"{normalization!r}.")
    if frozen_stages not in range(6):
        raise ValueError(f"KerasApplicationsBackbone: frozen_stages must be an integer in 0..5, got "
                         f"{frozen_stages!r}.")
    if width_multiplier != 1.0 and name not in WIDTH_SCALABLE:
        raise ValueError(f"KerasApplicationsBackbone: {name} has no width multiplier (only {WIDTH_SCALABLE}): "
                         f"width_multiplier must be 1, got {width_multiplier!r}.")
    if width_multiplier <= 0:
        raise ValueError(f"KerasApplicationsBackbone: width_multiplier must be > 0, got {width_multiplier!r}.")


def _application(name, weights, width_multiplier):
    """`keras.applications.<name>` without its top, on images of any size; a download or file that fails is a
    `ModelError` saying what to do."""
    arguments = {"include_top": False, "weights": weights, "input_shape": (None, None, 3)}
    if name in WIDTH_SCALABLE:
        arguments["alpha"] = width_multiplier
    try:
        with warnings.catch_warnings():  # that ImageNet weights of 224 px load for an input of any size: as wanted
            warnings.filterwarnings("ignore", message="`input_shape` is undefined or non-square")
            return getattr(keras.applications, name)(**arguments)
    except Exception as error:  # Keras raises Exception (download), ValueError (file, alpha) and OSError (file)
        if weights is None:
            raise
        what = ("Keras could not download its ImageNet weights (offline? copy the file of an online machine's "
                "~/.keras/models/ into this one's, or give weights: PATH)" if weights == "imagenet"
                else f"its weights file {weights} does not load")
        raise ModelError(f"keras.applications.{name}: {what}: {error}") from error


def _taps_and_stage_ends(application):
    """The operations (layers, and operators such as `+`) whose outputs are C3, C4, C5, and the index in
    `application.operations` where each stage 0..5 ends (-1 for stage 0: none)."""
    layers = application.operations[1:]  # the input layer has no stride
    probe = keras.Model(application.inputs, [layer.output for layer in layers])
    shapes = [spec.shape for spec in probe.compute_output_spec(keras.KerasTensor((1, *_PROBE_SIZE, 3)))]
    stride_of = {layer.name: _stride(shape) for layer, shape in zip(layers, shapes)}
    if stride_of[layers[-1].name] != TAP_STRIDES[-1]:
        raise ValueError(f"KerasApplicationsBackbone: {application.name}'s output is not at stride {TAP_STRIDES[-1]}.")
    producers_of = _producers_of(application)
    taps = [_last_before(layers, stride_of, producers_of, stride) for stride in TAP_STRIDES[:-1]] + [layers[-1]]
    strides = [stride_of[layer.name] for layer in layers]
    stage_ends = [-1] + [1 + max((index for index, at in enumerate(strides) if at and at <= 2 ** stage), default=-1)
                         for stage in range(1, 6)]
    return taps, stage_ends


def _last_before(layers, stride_of, producers_of, stride):
    """The tap at `stride`: of the layers at `stride` that feed a layer at twice it (directly or through layers such
    as padding that have no stride), the widest, the last in the graph of those as wide: what the next stage
    reads."""
    order = {layer.name: index for index, layer in enumerate(layers)}
    feeding = set()
    for name, producers in producers_of.items():
        if stride_of.get(name) != 2 * stride:
            continue
        pending = list(producers)
        while pending:
            producer = pending.pop()
            if producer not in order:
                continue
            if stride_of[producer] is None:
                pending.extend(producers_of[producer])
            elif stride_of[producer] == stride:
                feeding.add(producer)
    if not feeding:
        raise ValueError(f"KerasApplicationsBackbone: no layer at stride {stride} feeds one at stride {2 * stride}.")
    widest = max(feeding, key=lambda name: (layers[order[name]].output.shape[-1], order[name]))
    return layers[order[widest]]


def _producers_of(application):
    """{layer name: the names of the layers whose outputs it reads}, from the functional model's own config (the
    public record of its graph; a nested model's `input` would be its own input, not the outer graph's)."""
    def history(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                return [value["config"]["keras_history"][0]]
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            return [name for item in value for name in history(item)]
        return []

    return {layer["name"]: history(layer["inbound_nodes"]) for layer in application.get_config()["layers"]}


def _stride(shape):
    """The stride of a layer output of `shape` on the probe input, or None (not a feature map of the image)."""
    if len(shape) != 4:
        return None
    strides = {size // side if side and size % side == 0 else None for size, side in zip(_PROBE_SIZE, shape[1:3])}
    return strides.pop() if len(strides) == 1 else None
