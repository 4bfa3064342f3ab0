"""ImageNormalization presets against keras.applications and torchvision."""

import keras
import numpy as np
import pytest

from keras_retinanet.layers import ImageNormalization
from backbone_testing import random_images


def test_caffe_preset_matches_keras_applications_preprocessing():
    images = random_images((2, 6, 7, 3))
    expected = keras.applications.resnet.preprocess_input(images.copy())
    outputs = ImageNormalization.preset("caffe")(images)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs), expected, rtol=0, atol=1e-4)


def test_torch_preset_matches_torchvision_normalization():
    images = np.random.default_rng(0).integers(0, 256, (2, 6, 7, 3), dtype=np.uint8)
    expected = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    outputs = ImageNormalization.preset("torch")(images)
    assert outputs.dtype == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs), expected, rtol=0, atol=1e-5)


def test_image_normalization_under_mixed_bfloat16(mixed_bfloat16):
    assert ImageNormalization.preset("torch")(random_images((1, 4, 4, 3))).dtype == "bfloat16"


def test_image_normalization_validates_arguments():
    with pytest.raises(ValueError, match="preset"):
        ImageNormalization.preset("bogus")
    with pytest.raises(ValueError, match="std"):
        ImageNormalization(mean=(0, 0, 0), std=(1, 0, 1))
    with pytest.raises(ValueError, match="3 values"):
        ImageNormalization(mean=(0, 0), std=(1, 1, 1))
