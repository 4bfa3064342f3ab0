"""Inference over image files: loading a trained model and running its one detection path on images.

`detect` (what `bin/predict`, `bin/evaluate` and periodic evaluation run) and the SavedModel of
`keras_retinanet.export` both go through `detections_in_original_pixels`: the model's forward pass and
`RetinaNet.decode_predictions` (per-level top-k, score threshold, class-wise NMS), then boxes mapped back to the
original images. They cannot drift apart.
"""

import functools
import os
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_retinanet.config import ExperimentConfig, from_dict
from keras_retinanet.data.pipeline import inference_dataset, to_original_coordinates

MODEL_FILE = "model.keras"


class ModelError(ValueError):
    """A model file that is missing or cannot be loaded safely; the message names the file and the cause."""


def load_trained_model(path):
    """A `RetinaNet` from a `.keras` file or a model directory written by `train`, loaded with `safe_mode=True`
    (no Python code in the file is run); a `ModelError` naming the file and the cause if it cannot be."""
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(path):
        raise ModelError(f"no trained model at {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras' messages vary by cause; ours names the file and keeps the cause
        cause = " ".join(str(error).split())
        if "Exception encountered:" in cause:  # "X could not be deserialized properly. ... Exception encountered: "
            cause = cause.rsplit("Exception encountered:", 1)[1].strip()
        if "`Lambda` layer" in cause:
            cause = "it holds a Lambda layer with Python code, which safe loading does not run"
        raise ModelError(f"{path}: cannot be loaded ({type(error).__name__}: {cause[:400]})") from error


def model_data_config(model):
    """The `DataConfig` a model was trained with, from the metadata `train` stores in it."""
    config = model.metadata.get("config")
    if config is None:
        raise ValueError(
            "this model carries no experiment config (it was not trained with bin/train), so its input size and "
            "data splits are unknown"
        )
    return from_dict(ExperimentConfig, config, source="the model's stored config").data


def detections_in_original_pixels(model, images, scales, image_sizes, original_sizes, decoder=None):
    """The one detection path: detections of `model` on a padded batch, in pixels of the original images.

    Args:
        images: [B, Hp, Wp, 3] float32, resized and padded as `keras_retinanet.data.pipeline` does.
        scales: [B, 2] (y, x) factors that mapped original pixels into the resized images.
        image_sizes: [B, 2] each resized image's size inside the padding: boxes are clipped to it before NMS (as
            torchvision and detectron2 do).
        original_sizes: [B, 2] the original images' (height, width): boxes are clipped to them.
        decoder: a `DetectionDecoder` with other inference settings than the model's own.

    Returns `RetinaNet.decode_predictions`' dict, its `xyxy` boxes in original pixels.
    """
    predictions = model(images, training=False)
    return decode_in_original_pixels(model, predictions, tf.shape(images)[1:3], scales, image_sizes, original_sizes,
                                     decoder=decoder)


def decode_in_original_pixels(model, predictions, input_size, scales, image_sizes, original_sizes, decoder=None):
    """The decoding half of `detections_in_original_pixels`: detections from `model`'s raw `predictions` on a batch
    of `input_size` [height, width] (a tensor, or Python ints for static shapes), in original pixels."""
    detections = model.decode_predictions(predictions, input_size, image_sizes, decoder=decoder)
    boxes = detections["boxes"]
    if model.bounding_box_format != "xyxy":
        boxes = keras.utils.bounding_boxes.convert_format(
            boxes, model.bounding_box_format, "xyxy", height=input_size[0], width=input_size[1]
        )
    detections["boxes"] = to_original_coordinates(boxes, scales, original_sizes)
    return detections


_detect_functions = weakref.WeakKeyDictionary()  # model -> its traced detection path, reused across calls


def detect(model, images, data_config, batch_size):
    """Runs `model` over `images` (image file paths or a `DetectionDataset`), prepared per `data_config`:
    detections (numpy) in pixels of the upright original images, in order."""
    run = _detect_functions.get(model)
    if run is None:
        # Traced outside any distribution strategy the model was trained under: under MirroredStrategy, Keras'
        # predict_on_batch returns every replica's copy of the batch.
        run = _detect_functions[model] = tf.function(
            functools.partial(detections_in_original_pixels, model), reduce_retracing=True
        )
    batches = []
    for batch, info in inference_dataset(images, data_config, batch_size):
        detections = run(batch, info["scale"], info["image_size"], info["original_size"])
        batches.append({key: value.numpy() for key, value in detections.items()})
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]} if batches else {}
