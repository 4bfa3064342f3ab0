"""The tf.data input pipeline: decode, resize, augment, pad and batch images with their padded ground truth.

Training batches are `(images, {"boxes", "labels"})`, what `RetinaNet.fit` takes: anchor labelling happens in the
model (on the accelerator, with the model's own anchors). Inference batches are
`(images, {"scale", "original_size"})`, so that detections can be mapped back to the original images.
"""

import numpy as np
import tensorflow as tf

from keras_retinanet.boxes.labeler import IGNORE_REGION_LABEL, PADDING_LABEL

# By default padded image sides are multiples of the coarsest pyramid stride (P7: 2^7), so that every level tiles
# the image exactly (Detectron's choice); `data.size_divisor` can lower it (32 is torchvision's) to pad less.
SIZE_DIVISOR = 128


def decode_image(path):
    """RGB uint8 [H, W, 3] from an image file of any format TensorFlow reads (grayscale and RGBA converted)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8)


def resize_image(image, min_size, max_size):
    """Bilinear resize so the shorter side is `min_size` and the longer at most `max_size`.

    Returns the float32 image and the (y, x) scale factors new_size / old_size.
    """
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.minimum(tf.cast(min_size, tf.float32) / tf.reduce_min(size), max_size / tf.reduce_max(size))
    new_size = tf.maximum(tf.round(size * scale), 1.0)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.cast(new_size, tf.int32), method="bilinear")
    return resized, new_size / size


def pad_to_multiple(image, divisor=SIZE_DIVISOR):
    """Zero-pads the bottom and right of `image` [H, W, 3] to multiples of `divisor`."""
    size = tf.shape(image)[:2]
    padded = (size + divisor - 1) // divisor * divisor
    return tf.pad(image, [[0, padded[0] - size[0]], [0, padded[1] - size[1]], [0, 0]])


def _scale_boxes(boxes, scale):
    return boxes * tf.stack([scale[1], scale[0], scale[1], scale[0]])


def _flip_boxes(boxes, width):
    return tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)


def _records_to_tensors(dataset):
    """Flat tensors of all records: ground truth as ragged rows, ignore regions appended with label -2."""
    paths, image_ids, boxes, labels, row_lengths = [], [], [], [], []
    for record in dataset.records:
        paths.append(record.path)
        image_ids.append(record.image_id)
        boxes.extend([record.boxes, record.ignore_boxes])
        labels.extend([record.labels, np.full(len(record.ignore_boxes), IGNORE_REGION_LABEL, np.int32)])
        row_lengths.append(len(record.boxes) + len(record.ignore_boxes))
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    labels = np.concatenate(labels) if labels else np.zeros((0,), np.int32)
    return {
        "path": tf.constant(paths, tf.string),
        "image_id": tf.constant(image_ids, tf.int64),
        "boxes": tf.RaggedTensor.from_row_lengths(boxes.astype(np.float32), row_lengths),
        "labels": tf.RaggedTensor.from_row_lengths(labels.astype(np.int32), row_lengths),
    }


def training_dataset(dataset, config, batch_size):
    """Endless, shuffled, augmented training batches of `dataset` (a `DetectionDataset`) per `config` (`DataConfig`).

    Each image is resized with its shorter side at `min_size` times a scale-jitter factor drawn from
    `config.scale_jitter`, flipped with probability 0.5 when `horizontal_flip`, and padded to multiples of
    `size_divisor`;
    batches are padded to their largest image. Images without boxes stay in as negatives. With the same `seed`, the
    same batches come out, whatever the parallelism. `cache_images` keeps the decoded images in memory (for
    small datasets: it saves decoding them again every epoch).
    """
    if not dataset.records:
        raise ValueError(f"{dataset.source}: the training set has no images")
    most_boxes = max(len(r.boxes) + len(r.ignore_boxes) for r in dataset.records)
    if most_boxes > config.max_boxes:
        raise ValueError(
            f"{dataset.source}: an image has {most_boxes} boxes (ignore regions included), more than "
            f"data.max_boxes={config.max_boxes}: raise data.max_boxes"
        )
    low, high = config.scale_jitter

    def decode(element):
        return {**element, "image": decode_image(element.pop("path"))}

    def augment(index, element):
        seed = tf.stack([tf.constant(config.seed, tf.int64), index])
        jitter = tf.random.stateless_uniform([], seed, low, high)
        image, scale = resize_image(element["image"], config.min_size * jitter, config.max_size * jitter)
        boxes = _scale_boxes(element["boxes"], scale)
        if config.horizontal_flip:
            flip = tf.random.stateless_uniform([], seed + 1) < 0.5
            width = tf.cast(tf.shape(image)[1], tf.float32)
            image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
            boxes = tf.cond(flip, lambda: _flip_boxes(boxes, width), lambda: boxes)
        return pad_to_multiple(image, config.size_divisor), {"boxes": boxes, "labels": element["labels"]}

    records = tf.data.Dataset.from_tensor_slices(_records_to_tensors(dataset))
    if config.cache_images:
        records = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
    # Shuffling the endless stream (not each epoch anew) makes every iterator of this dataset yield the same
    # sequence: Keras and tf.distribute may open more than one.
    records = records.repeat().shuffle(len(dataset.records), seed=config.seed, reshuffle_each_iteration=False)
    if not config.cache_images:
        records = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return (
        records.enumerate()
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .padded_batch(
            batch_size,
            padded_shapes=([None, None, 3], {"boxes": [config.max_boxes, 4], "labels": [config.max_boxes]}),
            padding_values=(0.0, {"boxes": 0.0, "labels": PADDING_LABEL}),
            drop_remainder=True,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def inference_dataset(paths, config, batch_size):
    """Batches of the images at `paths`, in order, resized and padded as in training (per `config`, a
    `DataConfig`) without augmentation.

    Yields `(images, {"scale", "original_size"})`; `scale` is (y, x) new / original size.
    """

    def load(path):
        image = decode_image(path)
        original_size = tf.shape(image)[:2]
        image, scale = resize_image(image, config.min_size, config.max_size)
        return pad_to_multiple(image, config.size_divisor), {"scale": scale, "original_size": original_size}

    return (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .padded_batch(batch_size, padded_shapes=([None, None, 3], {"scale": [2], "original_size": [2]}))
        .prefetch(tf.data.AUTOTUNE)
    )


def to_original_coordinates(boxes, scale, original_size):
    """Detections `boxes` [B, D, 4] (`xyxy` in the resized image) back in original pixels, clipped to the image."""
    boxes = np.asarray(boxes, np.float32) / np.concatenate([scale[:, ::-1], scale[:, ::-1]], axis=1)[:, None, :]
    limits = np.concatenate([original_size[:, ::-1], original_size[:, ::-1]], axis=1)[:, None, :].astype(np.float32)
    return np.clip(boxes, 0.0, limits)
