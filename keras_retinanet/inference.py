"""Inference over image files: loading a trained model and running its one detection path on images.

`detect` (what `bin/predict`, `bin/evaluate` and periodic evaluation run) and the SavedModel of
`keras_retinanet.export` both go through `detections_in_original_pixels`: the model's forward pass and
`RetinaNet.decode_predictions` (per-level top-k, score threshold, class-wise NMS), then boxes mapped back to the
original images. They cannot drift apart.
"""

import functools
import json
import os
import weakref
import zipfile

import keras
import numpy as np
import tensorflow as tf

from keras_retinanet.config import DataConfig, ExperimentConfig, from_dict, shown
from keras_retinanet.data.pipeline import inference_dataset, to_original_coordinates
from keras_retinanet.errors import ModelError, one_line
from keras_retinanet.models import RetinaNet
from keras_retinanet.progress import image_progress

MODEL_FILE = "model.keras"
# Bounds on what a model file declares it holds, checked before anything is read or built from it:
MAX_MODEL_BYTES = 2 * 2**30  # all members: a ResNet-152 RetinaNet with its optimizer state holds well under 1 GiB
MAX_MODEL_JSON_BYTES = 16 * 2**20  # config.json, metadata.json: a RetinaNet's are tens of kilobytes
MAX_ZIP_DIRECTORY_BYTES = 2**20  # the list of members, which zipfile reads whole: a .keras file lists three
LAMBDA_CAUSE = "it holds a Lambda layer with Python code, which safe loading does not run"


_model_files = weakref.WeakKeyDictionary()  # model -> the file it was loaded from, for errors found later


def open_bounded_zip(path):
    """`path` opened as a `zipfile.ZipFile` whose declared contents are bounded (`MAX_MODEL_BYTES` in all,
    `MAX_MODEL_JSON_BYTES` per JSON member, `MAX_ZIP_DIRECTORY_BYTES` of member list) and honest; a `ModelError`
    naming the file otherwise.

    Members must be stored uncompressed, as Keras and torch write them: zipfile never returns more than a member's
    declared size, but inflates a compressed one past it before cutting, so a compressed member could be a bomb
    whatever it declares; a stored one cannot."""
    try:
        with open(path, "rb") as file:
            end_record = zipfile._EndRecData(file)  # the end record zipfile itself will use, ZIP64 included
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror})") from None
    if end_record is None:
        raise ModelError(f"{path}: not a zip archive")
    if end_record[zipfile._ECD_SIZE] > MAX_ZIP_DIRECTORY_BYTES:
        raise ModelError(f"{path}: its list of members declares {end_record[zipfile._ECD_SIZE]} bytes, more than "
                         f"the {MAX_ZIP_DIRECTORY_BYTES} a model file may have")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelError(f"{path}: not a readable zip archive ({error})") from None
    total = 0
    for member in archive.infolist():
        name = shown(member.filename)
        limit = MAX_MODEL_JSON_BYTES if member.filename.endswith(".json") else MAX_MODEL_BYTES
        total += member.file_size
        if member.file_size > limit or total > MAX_MODEL_BYTES:
            archive.close()
            raise ModelError(f"{path}: member {name} declares {member.file_size} bytes, which takes the file over "
                             f"its limit ({limit} bytes for it, {MAX_MODEL_BYTES} in all)")
        if member.compress_type != zipfile.ZIP_STORED or member.compress_size != member.file_size:
            archive.close()
            raise ModelError(f"{path}: member {name} is compressed (or declares two sizes); model files store "
                             "their members as they are")
    return archive


def _model_config(path):
    """The config.json of the .keras file `path`, read within the bounds of `open_bounded_zip`."""
    with open_bounded_zip(path) as archive:
        try:
            return json.loads(archive.read("config.json"))
        except KeyError:
            raise ModelError(f"{path}: not a Keras model (no config.json)") from None
        except (zipfile.BadZipFile, ValueError, RecursionError) as error:
            raise ModelError(f"{path}: its config.json cannot be read ({type(error).__name__})") from None


def _cause_to_refuse(config):
    """Why the model that `config` (a config.json) describes is refused before Keras builds anything of it, or
    None: a Lambda layer anywhere in it, or a model that is not a RetinaNet."""
    unvisited = [config]
    while unvisited:
        item = unvisited.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda":
                return LAMBDA_CAUSE
            unvisited.extend(item.values())
        elif isinstance(item, list):
            unvisited.extend(item)
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if class_name != RetinaNet.__name__:
        return (f"not a RetinaNet detector, which bin/train and bin/convert_torchvision write: its model is a "
                f"{shown(class_name)}")
    return None


def load_trained_model(path):
    """A `RetinaNet` from a `.keras` file or a model directory written by `train`, loaded with `safe_mode=True`
    (no Python code in the file is run); a `ModelError` naming the file and the cause if it cannot be.

    The zip's declared sizes are checked (`open_bounded_zip`) and its model must be a RetinaNet before Keras reads
    or builds anything; the metadata `bin/train` stores (class names, category ids, config) is checked after."""
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(path):
        raise ModelError(f"no trained model at {path}")
    if not path.endswith(".keras"):  # Keras would read .h5 files with h5py, outside these checks
        raise ModelError(f"{path}: cannot be loaded (not a .keras file, which bin/train and bin/convert_torchvision "
                         "write)")
    if zipfile.is_zipfile(path):  # Keras refuses other files itself, without reading them
        cause = _cause_to_refuse(_model_config(path))
        if cause:
            raise ModelError(f"{path}: cannot be loaded ({cause})")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras' messages vary by cause; ours names the file and keeps the cause
        cause = one_line(error, limit=None)
        if "Exception encountered:" in cause:  # "X could not be deserialized properly. ... Exception encountered: "
            cause = cause.rsplit("Exception encountered:", 1)[1].strip()
        if "`Lambda` layer" in cause:
            cause = LAMBDA_CAUSE
        raise ModelError(f"{path}: cannot be loaded ({type(error).__name__}: {cause[:400]})") from error
    if not isinstance(model, RetinaNet):  # a config naming RetinaNet that Keras resolved to another class
        raise ModelError(f"{path}: cannot be loaded (not a RetinaNet detector: its model is a "
                         f"{type(model).__name__})")
    _model_files[model] = path
    _check_label_metadata(model, path)
    if "config" in model.metadata:
        model_data_config(model)  # a stored config that does not parse is named now, not at its first use
    return model


def _check_label_metadata(model, path):
    """A `ModelError` unless `model.metadata` has `class_names` (strings) and `category_ids` (distinct integers),
    one per class, as `bin/train` and `bin/convert_torchvision` store them."""
    num_classes = model.num_classes
    for key, wanted, is_valid in (
        ("class_names", f"{num_classes} strings", lambda names: all(isinstance(name, str) for name in names)),
        ("category_ids", f"{num_classes} distinct integers",
         lambda ids: all(type(i) is int for i in ids) and len(set(ids)) == len(ids)),
    ):
        values = model.metadata.get(key)
        if not (isinstance(values, list) and len(values) == num_classes and is_valid(values)):
            got = f"a list of {len(values)}" if isinstance(values, list) else shown(values)
            raise ModelError(f"{path}: its metadata's {key} must be a list of {wanted}, one per class, got {got}")


def model_data_config(model):
    """The `DataConfig` a model was trained with, from the metadata `train` stores in it; a `ModelError` (naming the
    file it was loaded from) if it has none."""
    name = _model_files.get(model, "the model")
    config = model.metadata.get("config")
    if not isinstance(config, dict):
        raise ModelError(
            f"{name}: carries no experiment config (it was not trained with bin/train), so its input size and data "
            "splits are unknown" if config is None else f"{name}: its stored config must be a mapping, got "
            f"{shown(config)}"
        )
    return from_dict(ExperimentConfig, config, source=f"{name}'s stored config").data


def stored_data_config(model):
    """The `DataConfig` `model` was trained with, or the defaults for a model without a stored config (a converted
    one, whose users give the settings)."""
    return model_data_config(model) if (model.metadata or {}).get("config") else DataConfig()


def detections_in_original_pixels(model, images, scales, content_sizes, original_sizes, decoder=None):
    """The one detection path: detections of `model` on a padded batch, in pixels of the original images.

    Args:
        images: [B, Hp, Wp, 3] float32 network inputs, as `keras_retinanet.data.pipeline.preprocess_image` makes
            them (batches padded to their largest image).
        scales: [B, 2] (y, x) factors that mapped original pixels into the resized images.
        content_sizes: [B, 2] each resized image's size inside the padding: boxes are clipped to it before NMS (as
            torchvision and detectron2 do).
        original_sizes: [B, 2] the original images' (height, width): boxes are clipped to them.
        decoder: a `DetectionDecoder` with other inference settings than the model's own.

    Returns `RetinaNet.decode_predictions`' dict, its `xyxy` boxes in original pixels.
    """
    predictions = model(images, training=False)
    return decode_in_original_pixels(model, predictions, tf.shape(images)[1:3], scales, content_sizes,
                                     original_sizes, decoder=decoder)


def decode_in_original_pixels(model, predictions, padded_size, scales, content_sizes, original_sizes, decoder=None):
    """The decoding half of `detections_in_original_pixels`: detections from `model`'s raw `predictions` on a batch
    of `padded_size` [height, width] (a tensor, or Python ints for static shapes), in original pixels."""
    detections = model.decode_predictions(predictions, padded_size, content_sizes, decoder=decoder)
    boxes = detections["boxes"]
    if model.bounding_box_format != "xyxy":
        boxes = keras.utils.bounding_boxes.convert_format(
            boxes, model.bounding_box_format, "xyxy", height=padded_size[0], width=padded_size[1]
        )
    detections["boxes"] = to_original_coordinates(boxes, scales, original_sizes)
    return detections


_detect_functions = weakref.WeakKeyDictionary()  # model -> its traced detection path, reused across calls


def detect(model, images, data_config, batch_size, progress=False):
    """Runs `model` over `images` (image file paths or a `DetectionDataset`), prepared per `data_config`:
    detections (numpy) in pixels of the upright original images, in order. A batch holds images of one padded size
    only, so each image gets the detections it gets alone. `progress`: show a progress bar with images/s."""
    run = _detect_functions.get(model)
    if run is None:
        # Traced outside any distribution strategy the model was trained under: under MirroredStrategy, Keras'
        # predict_on_batch returns every replica's copy of the batch.
        run = _detect_functions[model] = tf.function(
            functools.partial(detections_in_original_pixels, model), reduce_retracing=True
        )
    batches, indices = [], []
    update = image_progress(len(getattr(images, "records", images)), progress)
    for batch, info in inference_dataset(images, data_config, batch_size, same_size_batches=True):
        detections = run(batch, info["scale"], info["content_size"], info["original_size"])
        batches.append({key: value.numpy() for key, value in detections.items()})
        indices.append(info["index"].numpy())
        update(sum(len(index) for index in indices))
    if not batches:
        return {}
    order = np.argsort(np.concatenate(indices))
    return {key: np.concatenate([batch[key] for batch in batches])[order] for key in batches[0]}
