"""The tf.data input pipeline: decode, resize, augment, pad and batch images with their padded ground truth.

Training batches are `(images, {"boxes", "labels"})`, what `RetinaNet.fit` takes: anchor labelling happens in the
model (on the accelerator, with the model's own anchors). Inference batches are
`(images, {"index", "scale", "original_size", "content_size"})`, so that detections can be mapped back to the
original images.

Sizes are named for what they measure: `original_size` the decoded, upright image; `content_size` the resized image
inside the network input; `padded_size` the network input (`content_size` rounded up to `size_divisor`).
`preprocess_image` is the one way a decoded image becomes a network input; the SavedModel, `bin/inspect_dataset`
and `inference_dataset` all use it.
"""

import numpy as np
import tensorflow as tf

from keras_retinanet.boxes.labels import GroundTruth
from keras_retinanet.data import augmentation
from keras_retinanet.data.dataset import DetectionDataset
from keras_retinanet.data.images import inspect_image
from keras_retinanet.data.records import DataError

# By default padded image sides are multiples of the coarsest pyramid stride (P7: 2^7), so that every level tiles
# the image exactly (Detectron's choice); `data.size_divisor` can lower it (32 is torchvision's) to pad less.
SIZE_DIVISOR = 128


# `data.max_boxes` left to the data rounds the most boxes of an image up to a multiple of this: a few more padded
# rows cost nothing, and a dataset grown by a box or two keeps its batch shapes.
MAX_BOXES_MULTIPLE = 8

# The most encoded images a shuffle buffer holds for datasets that embed their images (TFRecord); datasets of
# image files shuffle all their paths.
EMBEDDED_SHUFFLE_BUFFER = 2048


def decode_pixels(encoded):
    """RGB uint8 [H, W, 3] from encoded bytes of any format TensorFlow reads (grayscale, RGBA, palette and 16-bit
    converted), as stored (EXIF orientation not applied).

    JPEGs are decoded with libjpeg's accurate integer IDCT, as PIL, OpenCV and torchvision.io decode them
    (`tf.io.decode_image` uses the fast IDCT, up to 4 levels off on photos): the pixels a model sees do not depend
    on which library read the file, and converted torchvision models give torchvision's detections.
    """
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8),
    )
    image.set_shape([None, None, 3])
    return image


def decode_image(encoded, orientation=1):
    """Upright RGB uint8 [H, W, 3] from encoded bytes (`decode_pixels`), turned per the EXIF `orientation` (1-8)
    that the reader found (TensorFlow ignores EXIF)."""
    image = decode_pixels(encoded)
    transposed = lambda: tf.transpose(image, [1, 0, 2])  # noqa: E731
    return tf.switch_case(
        tf.cast(orientation, tf.int32) - 1,
        [
            lambda: image,
            lambda: image[:, ::-1],  # mirrored left-right
            lambda: image[::-1, ::-1],  # turned 180 degrees
            lambda: image[::-1],  # mirrored top-bottom
            transposed,
            lambda: transposed()[:, ::-1],  # turned 90 degrees clockwise
            lambda: transposed()[::-1, ::-1],  # transverse
            lambda: transposed()[::-1],  # turned 90 degrees counter-clockwise
        ],
    )


def encoded_images(dataset):
    """`tf.data.Dataset` of the encoded images of `dataset` (a `DetectionDataset`), one per record, in order."""
    if dataset.image_source is not None:
        return dataset.image_source.encoded_images()
    return tf.data.Dataset.from_tensor_slices([record.path for record in dataset.records]).map(tf.io.read_file)


def _encoded_with_orientations(images, max_pixels=np.inf):
    """(encoded image, EXIF orientation) pairs of `images`: image file paths or a `DetectionDataset`. Image files
    are inspected first: an `ImageProblem` names one that is missing, unreadable or over `max_pixels` (what its
    decoding would allocate) before any is decoded."""
    if isinstance(images, DetectionDataset):
        orientations = [record.orientation for record in images.records]
        encoded = encoded_images(images)
    else:
        orientations = [inspect_image(path, verify=False, max_pixels=max_pixels).orientation for path in images]
        encoded = tf.data.Dataset.from_tensor_slices(tf.constant(images, tf.string)).map(tf.io.read_file)
    return tf.data.Dataset.zip(encoded, tf.data.Dataset.from_tensor_slices(tf.constant(orientations, tf.int32)))


def load_images(images, max_pixels=np.inf):
    """Yields `images` (image file paths or a `DetectionDataset`) upright, as uint8 numpy arrays (for pictures)."""
    for encoded, orientation in _encoded_with_orientations(images, max_pixels):
        yield decode_image(encoded, orientation).numpy()


# `DataConfig.resize_rule` choices, each reproducing its reference's resizing exactly (sizes computed in float64
# as the references compute them in Python; pixels by bilinear interpolation without antialiasing, as they sample):
# - "detectron": Detectron's `prep_im_for_blob`: scale = min_size / shorter side, unless the longer side would then
#   round to more than max_size, then max_size / longer side; new sides rounded half to even and pixels sampled at
#   (x + 0.5) / scale - 0.5, as its `cv2.resize(im, None, fx=scale, fy=scale)` does; padding with black.
# - "torchvision": torchvision's GeneralizedRCNNTransform in eager mode: scale = min(min_size / shorter side,
#   max_size / longer side), new sides floored, pixels sampled by the ratio of new to old size (its
#   `interpolate(..., recompute_scale_factor=True)`); padding with the ImageNet mean pixel, which the model's "torch"
#   normalisation maps to torchvision's zero padding.
RESIZE_RULES = ("detectron", "torchvision")
_TORCHVISION_PAD_PIXEL = (0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0)


def resize_image(image, min_size, max_size, resize_rule="detectron"):
    """Resizes `image` [H, W, C] per the rule of `resize_rule` (see `RESIZE_RULES`): shorter side `min_size`,
    longer at most `max_size`.

    Returns the float32 image and the (y, x) scale factors that map original pixel coordinates into it.
    """
    new_size, scale = _size_rule(tf.shape(image)[:2], min_size, max_size, resize_rule)
    new_size = tf.cast(new_size, tf.int32)
    image = tf.cast(image, tf.float32)
    if resize_rule == "detectron":
        scale = tf.cast(tf.fill([2], scale), tf.float32)
        resized = tf.raw_ops.ScaleAndTranslate(
            images=image[None], size=new_size, scale=scale, translation=tf.zeros([2]), kernel_type="triangle",
            antialias=False,
        )[0]
        return resized, scale
    resized = tf.image.resize(image, new_size, method="bilinear")
    return resized, tf.cast(new_size, tf.float32) / tf.cast(tf.shape(image)[:2], tf.float32)


def resized_size(size, min_size, max_size, resize_rule="detectron"):
    """The float32 (height, width) `resize_image` gives an image of `size` (height, width)."""
    return tf.cast(_size_rule(size, min_size, max_size, resize_rule)[0], tf.float32)


def _size_rule(size, min_size, max_size, resize_rule):
    """(new (height, width), scale factor), float64, per the size rule of `resize_rule`."""
    size = tf.cast(size, tf.float64)
    shorter, longer = tf.reduce_min(size), tf.reduce_max(size)
    min_size, max_size = tf.cast(min_size, tf.float64), tf.cast(max_size, tf.float64)
    scale = min_size / shorter
    if resize_rule == "torchvision":
        scale = tf.minimum(scale, max_size / longer)
        new_size = tf.floor(size * scale)
    elif resize_rule == "detectron":
        scale = tf.where(tf.round(scale * longer) > max_size, max_size / longer, scale)
        new_size = tf.round(size * scale)
    else:
        raise ValueError(f"resize_rule must be one of {RESIZE_RULES}, got {resize_rule!r}")
    return tf.maximum(new_size, 1.0), scale


def padding_pixel(resize_rule="detectron"):
    """The [3] pixel that pads images: black, or the ImageNet mean pixel for the "torchvision" resize rule."""
    return tf.constant((0.0, 0.0, 0.0) if _pads_with_black(resize_rule) else _TORCHVISION_PAD_PIXEL, tf.float32)


def pad_to_multiple(image, divisor=SIZE_DIVISOR, resize_rule="detectron"):
    """Pads the bottom and right of float32 `image` [H, W, 3] to multiples of `divisor` with `padding_pixel`."""
    return _centred_padding(image, divisor, resize_rule) + padding_pixel(resize_rule)


def padded_size(size, divisor=SIZE_DIVISOR):
    """`size` (a side, a (height, width) tensor, or Python ints) rounded up to multiples of `divisor`, as
    `pad_to_multiple` pads."""
    return (size + divisor - 1) // divisor * divisor


def _centred_padding(image, divisor, resize_rule):
    """`pad_to_multiple(...) - padding_pixel(...)`: what batches carry, so that `padded_batch`'s zeros pad with
    the padding pixel too once it is added back."""
    size = tf.shape(image)[:2]
    padded = padded_size(size, divisor)
    paddings = [[0, padded[0] - size[0]], [0, padded[1] - size[1]], [0, 0]]
    if _pads_with_black(resize_rule):  # nothing to take off: saves a pass over the image
        return tf.pad(image, paddings)
    return tf.pad(image - padding_pixel(resize_rule), paddings)


def _pads_with_black(resize_rule):
    return resize_rule != "torchvision"


def _add_padding_pixel(batches, resize_rule):
    """`batches` of (images, ...) with the padding pixel that `_centred_padding` took off added back."""
    if _pads_with_black(resize_rule):
        return batches
    pad_pixel = padding_pixel(resize_rule)
    return batches.map(lambda images, info: (images + pad_pixel, info))


def _records_to_tensors(dataset):
    """Flat tensors of all records: ground truth as ragged rows, ignore regions appended with label
    `GroundTruth.IGNORE_REGION`."""
    paths, image_ids, orientations, boxes, labels, row_lengths = [], [], [], [], [], []
    for record in dataset.records:
        paths.append(record.path)
        image_ids.append(record.image_id)
        orientations.append(record.orientation)
        boxes.extend([record.boxes, record.ignore_boxes])
        labels.extend([record.labels, np.full(len(record.ignore_boxes), GroundTruth.IGNORE_REGION, np.int32)])
        row_lengths.append(len(record.boxes) + len(record.ignore_boxes))
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    labels = np.concatenate(labels) if labels else np.zeros((0,), np.int32)
    return {
        "path": tf.constant(paths, tf.string),
        "image_id": tf.constant(image_ids, tf.int64),
        "orientation": tf.constant(orientations, tf.int32),
        "boxes": tf.RaggedTensor.from_row_lengths(boxes.astype(np.float32), row_lengths),
        "labels": tf.RaggedTensor.from_row_lengths(labels.astype(np.int32), row_lengths),
    }


def training_dataset(dataset, config, batch_size, skip_batches=0):
    """Endless, shuffled, augmented training batches of `dataset` (a `DetectionDataset`) per `config` (`DataConfig`).

    Each image goes through the augmentation steps of `config.augmentation_steps()` (`data.augmentation`; by
    default a resize with its shorter side at `min_size` times a factor drawn from `scale_jitter`, then a flip with
    probability 0.5 when `horizontal_flip`: see `keras_retinanet.data.augmentation`) and is padded to multiples of
    `size_divisor`; batches are padded to their largest image. Images without boxes stay in as negatives. With the
    same `seed`, the same batches come out, whatever the parallelism. `cache_images` keeps the decoded images in
    memory (for small datasets: it saves decoding them again every epoch). `skip_batches` starts the stream that
    many batches in, without decoding what it skips (a resumed run continues where the backup left off).
    """
    max_boxes = needed_max_boxes(dataset, config.max_boxes)
    skipped = skip_batches * batch_size
    batches = (
        _decoded_records(dataset, config, skipped)
        .enumerate(start=skipped)
        .map(_augmentation(config), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .padded_batch(
            batch_size,
            padded_shapes=([None, None, 3], {"boxes": [max_boxes, 4], "labels": [max_boxes]}),
            padding_values=(0.0, {"boxes": 0.0, "labels": GroundTruth.PADDING}),
            drop_remainder=True,
        )
    )
    return _add_padding_pixel(batches, config.resize_rule).prefetch(tf.data.AUTOTUNE)


def needed_max_boxes(dataset, max_boxes=None):
    """The rows every training image's ground truth is padded to: `max_boxes` (`data.max_boxes`), checked against
    `dataset`'s most crowded image (a DataError naming it when it has more), or, for None, that image's count
    (boxes and ignore regions) rounded up to a multiple of `MAX_BOXES_MULTIPLE`."""
    if not dataset.records:
        raise DataError(f"{dataset.source}: the training set has no images")
    crowded = max(dataset.records, key=lambda record: len(record.boxes) + len(record.ignore_boxes))
    most_boxes = len(crowded.boxes) + len(crowded.ignore_boxes)
    if max_boxes is None:
        return max(1, -(-most_boxes // MAX_BOXES_MULTIPLE)) * MAX_BOXES_MULTIPLE
    if most_boxes > max_boxes:
        raise DataError(f"{crowded.path} (image {crowded.image_id} of {dataset.source}): {most_boxes} boxes (ignore "
                        f"regions included), more than data.max_boxes={max_boxes}; set data.max_boxes to "
                        f"{most_boxes} or more, or leave it out (null) to take what the data needs")
    return max_boxes


def _decoded_records(dataset, config, skip=0):
    """The endless, shuffled stream of `dataset`'s records with their decoded `image`s (decoded once and kept in
    memory with `config.cache_images`), from its `skip`-th record on."""

    def decode(element):
        encoded = element.pop("encoded") if "encoded" in element else tf.io.read_file(element["path"])
        return {**element, "image": decode_image(encoded, element["orientation"])}

    records = tf.data.Dataset.from_tensor_slices(_records_to_tensors(dataset))
    shuffle_buffer = len(dataset.records)
    if dataset.image_source is not None:
        records = tf.data.Dataset.zip(records, encoded_images(dataset)).map(lambda r, e: {**r, "encoded": e})
        shuffle_buffer = min(shuffle_buffer, EMBEDDED_SHUFFLE_BUFFER)
    if config.cache_images:
        records = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
    # Shuffling the endless stream (not each epoch anew) makes every iterator of this dataset yield the same
    # sequence: Keras and tf.distribute may open more than one.
    records = records.repeat().shuffle(shuffle_buffer, seed=config.seed, reshuffle_each_iteration=False).skip(skip)
    if not config.cache_images:
        records = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return records


def _augmentation(config):
    """(index, record) -> (image padded to `size_divisor` minus the padding pixel, {"boxes", "labels"}): the steps
    of `config.augmentation_steps()`, drawn from `config.seed` and the element's index, so that any parallelism
    gives the same."""
    steps, fill = config.augmentation_steps(), padding_pixel(config.resize_rule)

    def resize(image, factor):
        return resize_image(image, config.min_size * factor, config.max_size * factor, config.resize_rule)

    def augment(index, element):
        seed = tf.stack([tf.constant(config.seed, tf.int64), index])
        image, boxes, labels = augmentation.augment(
            element["image"], element["boxes"], element["labels"], steps, seed, resize, fill
        )
        return _centred_padding(image, config.size_divisor, config.resize_rule), {"boxes": boxes, "labels": labels}

    return augment


def preprocess_image(image, config):
    """A decoded image [H, W, 3] -> (network input, scale, content size), per `config` (a `DataConfig`): resized by
    its `resize_rule` (shorter side `min_size`, longer at most `max_size`) and padded at the bottom and right to
    multiples of `size_divisor` with `padding_pixel`. `scale` is (y, x) new / original size; the content size is
    the resized image's (height, width) inside the padding."""
    padded, scale, content_size = _resized_and_padded(image, config)
    return padded + padding_pixel(config.resize_rule), scale, content_size


def _resized_and_padded(image, config):
    """`preprocess_image` less the padding pixel (see `_centred_padding`), which batches add back once."""
    resized, scale = resize_image(image, config.min_size, config.max_size, config.resize_rule)
    return _centred_padding(resized, config.size_divisor, config.resize_rule), scale, tf.shape(resized)[:2]


def inference_dataset(images, config, batch_size, same_size_batches=False):
    """Batches of `images` (image file paths, or a `DetectionDataset`) as `preprocess_image` prepares them per
    `config` (a `DataConfig`): no augmentation, EXIF orientation applied.

    Yields `(images, {"index", "scale", "original_size", "content_size"})`: `index` is each image's place in
    `images`, `scale` (y, x) new / original size of the upright image, `content_size` the resized size inside the
    padding. Batches come in order and pad their images to the largest; with `same_size_batches`, a batch holds only
    images of one padded size (in order within each size, batches in the order they fill up), so that no image is
    padded beyond its own padded size and each gets the detections it gets alone (more padding changes what the
    network's convolutions see near the image).
    """
    def load(index, encoded_and_orientation):
        image = decode_image(*encoded_and_orientation)
        padded, scale, content_size = _resized_and_padded(image, config)
        return padded, {"index": index, "scale": scale, "original_size": tf.shape(image)[:2],
                        "content_size": content_size}

    def batch(images):
        return images.padded_batch(
            batch_size,
            padded_shapes=([None, None, 3], {"index": [], "scale": [2], "original_size": [2], "content_size": [2]}),
        )

    loaded = _encoded_with_orientations(images, config.max_image_pixels).enumerate().map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if same_size_batches:
        def size_key(image, info):
            shape = tf.shape(image, out_type=tf.int64)
            return shape[0] * 2**32 + shape[1]

        batches = loaded.group_by_window(size_key, lambda key, images: batch(images), window_size=batch_size)
    else:
        batches = batch(loaded)
    return _add_padding_pixel(batches, config.resize_rule).prefetch(tf.data.AUTOTUNE)


def to_original_coordinates(boxes, scale, original_size):
    """Detections `boxes` [B, D, 4] (`xyxy` in the resized images) back in original pixels, clipped to the images:
    `scale` [B, 2] is (y, x) new / original size, `original_size` [B, 2] (height, width). Runs in graphs too."""
    scale = tf.cast(scale, tf.float32)[:, ::-1]  # (x, y)
    limits = tf.cast(original_size, tf.float32)[:, ::-1]
    boxes = tf.cast(boxes, tf.float32) / tf.tile(scale, [1, 2])[:, None, :]
    return tf.clip_by_value(boxes, 0.0, tf.tile(limits, [1, 2])[:, None, :])
