"""Per-channel normalization of [0, 255] RGB images to what a backbone's weights expect."""

import keras
from keras import ops

# Normalizations that pretrained backbone weights were trained with, as `ImageNormalization` arguments.
PRESETS = {
    # torchvision / detectron2 "RGB" models: RGB, ImageNet mean and std.
    "torch": {
        "mean": (0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0),
        "std": (0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0),
        "bgr": False,
    },
    # keras.applications ResNet / Caffe MSRA models: BGR, mean subtraction only
    # (`keras.applications.resnet.preprocess_input`).
    "caffe": {
        "mean": (103.939, 116.779, 123.68),
        "std": (1.0, 1.0, 1.0),
        "bgr": True,
    },
    # keras.applications MobileNet, MobileNetV2, ResNetV2: [-1, 1] (`keras.applications.mobilenet_v2.preprocess_input`).
    "tf": {
        "mean": (127.5, 127.5, 127.5),
        "std": (127.5, 127.5, 127.5),
        "bgr": False,
    },
}


@keras.saving.register_keras_serializable(package="keras_retinanet")
class ImageNormalization(keras.layers.Layer):
    """Maps RGB pixel values in [0, 255] to `(channels - mean) / std`.

    Computed in float32 (inputs may be integer) and cast to the compute dtype.

    Args:
        mean: 3 per-channel means, in [0, 255] pixel units, in the channel order after the optional
            reversal (BGR order when `bgr=True`).
        std: 3 per-channel standard deviations, same units and order; all > 0.
        bgr: reverse the channels (RGB -> BGR) before normalizing.
    """

    def __init__(self, mean, std, bgr=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = _three_floats("mean", mean)
        self.std = _three_floats("std", std)
        if min(self.std) <= 0:
            raise ValueError(f"ImageNormalization: std must be > 0, got {self.std}.")
        self.bgr = bool(bgr)

    @classmethod
    def preset(cls, preset_name, /, **kwargs):
        """Builds the layer for a named preset in `PRESETS` ("torch", "caffe" or "tf"); kwargs go to the layer."""
        if preset_name not in PRESETS:
            raise ValueError(
                f"Unknown ImageNormalization preset {preset_name!r}; expected one of {sorted(PRESETS)}."
            )
        return cls(**PRESETS[preset_name], **kwargs)

    def call(self, inputs):
        images = ops.cast(inputs, "float32")
        if self.bgr:
            images = ops.flip(images, axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype="float32")
        std = ops.convert_to_tensor(self.std, dtype="float32")
        return ops.cast((images - mean) / std, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": list(self.mean), "std": list(self.std), "bgr": self.bgr}


def _three_floats(name, values):
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"ImageNormalization: {name} must have 3 values, got {values}.")
    return values
