"""TFRecord datasets in the TF Object Detection API `tf.Example` layout: images embedded, boxes normalised. Here:
their parser (`keras_retinanet.data.read_tfrecord` reads them into a `DetectionDataset`) and their writers.

Read features: `image/encoded`, `image/filename`, `image/source_id`, `image/height`, `image/width`,
`image/object/bbox/{xmin,ymin,xmax,ymax}` (floats in 0..1 of the width / height), `image/object/class/label`
(int64, the dataset's category id), `image/object/class/text`, and optionally `image/object/difficult` and
`image/object/is_crowd` (either set makes the object an ignore region). `write_tfrecords` writes the same layout
(plus `image/format`), so that the files also feed the TF Object Detection API and tools built on it.
"""

import dataclasses
import io
import logging
import os
import re

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_retinanet.config import cut, shown
from keras_retinanet.data.classes import MAX_CATEGORY_ID, read_class_file, write_label_map
from keras_retinanet.data.files import check_regular_file
from keras_retinanet.data.pipeline import decode_image, encoded_images
from keras_retinanet.data.records import AnnotatedImage, DataError, EncodedExample
from keras_retinanet.deprecation import moved_names

logger = logging.getLogger("keras_retinanet.data")

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/object/bbox/xmin": tf.io.RaggedFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.RaggedFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.RaggedFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.RaggedFeature(tf.float32),
    "image/object/class/label": tf.io.RaggedFeature(tf.int64),
    "image/object/class/text": tf.io.RaggedFeature(tf.string),
    "image/object/difficult": tf.io.RaggedFeature(tf.int64),
    "image/object/is_crowd": tf.io.RaggedFeature(tf.int64),
}
_BOX_KEYS = tuple(f"image/object/bbox/{key}" for key in ("xmin", "ymin", "xmax", "ymax"))
_FLAG_KEYS = ("image/object/difficult", "image/object/is_crowd")
# Examples parsed (and image bytes held) at a time while reading.
_BATCH = 64
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # fits int64
_EXTENSIONS = {"jpeg": (".jpg", ".jpeg"), "png": (".png",), "gif": (".gif",), "bmp": (".bmp",), "webp": (".webp",)}


@dataclasses.dataclass(frozen=True)
class TFRecordImages:
    """The `image_source` of a TFRecord `DetectionDataset`: the images of the kept examples, read from the shards.

    Attributes:
        shards: the TFRecord files, in reading order.
        keep: bool [number of examples in all shards]: whether each example became a record.
        file_names: `image/filename` of each record.
        shard_sizes: the number of examples in each shard.
    """

    shards: tuple
    keep: np.ndarray
    file_names: tuple
    shard_sizes: tuple

    def shard(self, index, count):
        """(indices of the records in this share, its `TFRecordImages`): worker `index` of `count` reads whole
        files (shards index, index + count, ...) when there are at least `count` of them, else every count-th
        record of all of them."""
        record_of_example = np.cumsum(self.keep) - 1  # the record each kept example became
        if len(self.shards) >= count:
            ends = np.cumsum(self.shard_sizes)
            chosen = list(range(index, len(self.shards), count))
            mine = np.zeros_like(self.keep)
            for shard in chosen:
                mine[ends[shard] - self.shard_sizes[shard]:ends[shard]] = True
            keep = self.keep[mine]
            records = record_of_example[mine & self.keep]
            return records, TFRecordImages(tuple(self.shards[i] for i in chosen), keep,
                                           tuple(self.file_names[r] for r in records),
                                           tuple(self.shard_sizes[i] for i in chosen))
        keep = self.keep & (record_of_example % count == index)
        records = record_of_example[keep]
        return records, TFRecordImages(self.shards, keep, tuple(self.file_names[r] for r in records),
                                       self.shard_sizes)

    def encoded_images(self):
        """`tf.data.Dataset` of the `image/encoded` bytes of the records, in order (the shards are streamed)."""
        keep = tf.constant(self.keep, tf.bool)
        feature = {"image/encoded": _FEATURES["image/encoded"]}
        return (
            tf.data.TFRecordDataset(list(self.shards))
            .enumerate()
            .filter(lambda index, _: keep[index])
            .map(lambda _, example: tf.io.parse_single_example(example, feature)["image/encoded"])
        )


def parse_tfrecord(annotations, classes=None):
    """The examples of TFRecord shards in the TF Object Detection API layout, as `TFRecordExamples`.

    Args:
        annotations: a TFRecord file or a glob of shards (`train-*.tfrecord`), read in sorted order.
        classes: a class file or `label_map.pbtxt` giving the category ids and names; or None to take them from the
            (label, text) pairs of the examples.

    Raises:
        DataError: naming the pattern when no file matches it, or a matching local file that is not a regular
            file; iterating the examples raises the rest (see `TFRecordExamples`).
    """
    pattern = os.fspath(annotations)
    shards = sorted(tf.io.gfile.glob(pattern))
    if not shards:
        raise DataError(f"{pattern}: no TFRecord file matches this path or pattern")
    for shard in shards:
        if "://" not in shard:  # a local file (remote file systems have no FIFOs)
            check_regular_file(shard, "TFRecord file")
    return TFRecordExamples(pattern, tuple(shards), _ClassNames(classes))


class TFRecordExamples:
    """The examples of TFRecord `shards` (matched by the pattern `source`), parsed as they are read.

    `batches()` yields them, so that the whole dataset is never in memory; once it has, `classes()` gives the
    dataset's classes. Each example is an `EncodedExample`: boxes normalised to `image/width` and `image/height`
    (the image's own size when both are absent), labels the category ids `image/object/class/label`, `where` (and
    `path`) `SHARD#INDEX (FILENAME)`, INDEX being the example's 0-based position in its shard. `difficult` and
    `is_crowd` objects are ignore regions.
    """

    def __init__(self, source, shards, names):
        self.source = source
        self.shards = shards
        self._names = names

    def batches(self):
        """Yields lists of `EncodedExample`s, shard by shard in sorted order.

        Raises:
            DataError: naming the shard, the example and the value, for no examples at all, a corrupt file, an
                example that does not parse, object fields of different lengths, a class label not in the class
                file, a label without text (no class file) or with two texts.
        """
        count = 0
        for index, shard in enumerate(self.shards):
            for start, batch in _parsed_batches(shard):
                examples = [_example(batch, i, f"{shard}#{start + i}", index, self._names)
                            for i in range(len(batch["image/encoded"]))]
                count += len(examples)
                yield examples
        if not count:
            raise DataError(f"{self.source}: no examples in {', '.join(self.shards)}")

    def classes(self):
        """(category ids in increasing order, their names): the class file's, or those the examples named."""
        return self._names.classes()


def _parsed_batches(shard):
    """Yields (index of the first example, {feature: numpy values}) for batches of the shard's examples."""
    iterator = iter(tf.data.TFRecordDataset(shard).batch(_BATCH))
    start = 0
    while True:
        try:
            serialized = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise DataError(
                f"{shard}: not a readable TFRecord file, or corrupt after example {start} ({_first_line(error)})"
            ) from None
        try:
            parsed = tf.io.parse_example(serialized, _FEATURES)
        except tf.errors.InvalidArgumentError:
            for i in range(len(serialized)):
                try:
                    tf.io.parse_example(serialized[i : i + 1], _FEATURES)
                except tf.errors.InvalidArgumentError as error:
                    raise DataError(
                        f"{shard}#{start + i}: not a tf.Example of the TF Object Detection API layout "
                        f"({_first_line(error)})"
                    ) from None
            raise
        batch = {}
        for key, value in parsed.items():
            if isinstance(value, tf.RaggedTensor):
                values, splits = value.values.numpy(), value.row_splits.numpy()
                batch[key] = [values[splits[i] : splits[i + 1]] for i in range(len(splits) - 1)]
            else:
                batch[key] = value.numpy()
        yield start, batch
        start += len(serialized)


def _first_line(error):
    return error.message.strip().splitlines()[0]


def _example(batch, i, location, shard, names):
    """The `EncodedExample` of one parsed example, checked."""
    file_name = batch["image/filename"][i].decode("utf-8", "replace")
    where = f"{location} ({cut(file_name)})" if file_name else location
    width, height = int(batch["image/width"][i]), int(batch["image/height"][i])
    if width < 0 or height < 0 or (width == 0) != (height == 0):
        raise DataError(f"{where}: image/width {width} and image/height {height} must both be positive (or absent)")
    boxes = [np.asarray(batch[key][i], np.float64) for key in _BOX_KEYS]
    labels = batch["image/object/class/label"][i]
    class_texts = [text.decode("utf-8", "replace") for text in batch["image/object/class/text"][i]]
    count = len(boxes[0])
    lengths = {key: len(batch[key][i]) for key in (*_BOX_KEYS, "image/object/class/label")}
    optional = {key: len(batch[key][i]) for key in ("image/object/class/text", *_FLAG_KEYS)}
    if any(length != count for length in lengths.values()) or any(n not in (0, count) for n in optional.values()):
        raise DataError(f"{where}: object fields of different lengths {({**lengths, **optional})}")
    ignored = np.zeros(count, bool)
    for key in _FLAG_KEYS:
        flags = batch[key][i]
        if np.any((flags != 0) & (flags != 1)):
            raise DataError(f"{where}: {key} must be 0 or 1, got {shown(flags.tolist())}")
        if len(flags):
            ignored |= flags.astype(bool)
    object_locations = [f"{where}: object {j + 1}" for j in range(count)]
    for j, label in enumerate(labels.tolist()):
        names.check(label, class_texts[j] if class_texts else "", object_locations[j])
    boxes = np.stack(boxes, axis=1).reshape(-1, 4)
    locations = np.array(object_locations, object)
    image = AnnotatedImage(
        image_id=0,  # set once all source ids are known
        path=where,
        where=where,
        stated_size=(width, height) if width else None,
        boxes=boxes[~ignored],
        labels=labels[~ignored],
        box_locations=locations[~ignored],
        ignore_boxes=boxes[ignored],
        ignore_labels=labels[ignored],
        ignore_locations=locations[ignored],
    )
    source_id = batch["image/source_id"][i].decode("utf-8", "replace")
    return EncodedExample(image, batch["image/encoded"][i], file_name, source_id, shard)


class _ClassNames:
    """The classes of a TFRecord dataset: those of a class file, or else named by the examples' texts."""

    def __init__(self, class_file):
        self.class_file = class_file
        self.known = dict(zip(*read_class_file(class_file))) if class_file else None
        self.texts = {}  # category id -> (text, where it was first given), without a class file
        self.labels = {}  # text -> (category id, where it was first given), without a class file
        self.mismatches = set()  # (category id, text) differing from the class file, warned about once

    def check(self, label, text, where):
        """Checks one object's class label (the category id) and text; DataError naming `where` and the value."""
        if self.known is not None:
            if label not in self.known:
                raise DataError(f"{where}: class label {label} is not in the class file {self.class_file} "
                                f"(ids: {shown(sorted(self.known))})")
            if text and text != self.known[label] and (label, text) not in self.mismatches:
                self.mismatches.add((label, text))
                logger.warning("%s: class label %d is named %s, the class file %s names it %s; the label counts",
                               where, label, shown(text), self.class_file, shown(self.known[label]))
            return
        if not 0 <= label <= MAX_CATEGORY_ID:
            raise DataError(f"{where}: class label {label} must be in 0..{MAX_CATEGORY_ID}")
        if not text:
            raise DataError(f"{where}: class label {label} has no image/object/class/text; without a class file the "
                            "classes are named by the texts (give a class file or label_map.pbtxt)")
        first, first_where = self.texts.setdefault(label, (text, where))
        if text != first:
            raise DataError(f"{where}: class label {label} is named {shown(text)}, but {shown(first)} at {first_where}")
        other, other_where = self.labels.setdefault(text, (label, where))
        if label != other:
            raise DataError(f"{where}: class label {label} is named {shown(text)}, and so is class label {other} at "
                            f"{other_where} (one class would have two labels; give a class file or label_map.pbtxt)")

    def classes(self):
        """(category ids in increasing order, their names)."""
        if self.known is not None:
            return sorted(self.known), [self.known[i] for i in sorted(self.known)]
        return sorted(self.texts), [self.texts[i][0] for i in sorted(self.texts)]


def image_ids(source_ids, locations):
    """The image ids of examples with `image/source_id`s `source_ids` (`locations` naming the examples): the
    integer source ids when all are integers (as the TF Object Detection API's COCO converter writes them;
    duplicates are DataErrors), else 1, 2, ... in example order."""
    if not all(_INTEGER.fullmatch(source_id) for source_id in source_ids):
        return np.arange(1, len(source_ids) + 1)
    ids = np.array([int(source_id) for source_id in source_ids], np.int64)
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        first, second = order[repeated[0]], order[repeated[0] + 1]
        raise DataError(f"{locations[second]}: image/source_id {source_ids[second]!r} is also the source id of "
                        f"{locations[first]} (integer source ids are the image ids and must be unique)")
    return ids


def write_tfrecords(dataset, output_prefix, num_shards=1, progress=None):
    """Writes `dataset` as TFRecord shards in the TF Object Detection API layout, plus its label map.

    Files: `{output_prefix}-00000-of-0000N.tfrecord` ... (consecutive records per shard, so the sorted shards read
    back in the same order) and `{output_prefix}.label_map.pbtxt`. Labels are written as the dataset's category
    ids with their class names, ignore regions as objects with `is_crowd` 1, `image/source_id` as the image id.
    Images are the original file bytes, except those with an EXIF orientation other than 1: their upright pixels
    are stored as PNG (lossless), as TFRecord readers ignore EXIF. `progress` is called with the number of images
    written so far after each (e.g. `keras.utils.Progbar(n).update`). Returns the shard paths.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    output_prefix = os.fspath(output_prefix)
    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    write_label_map(f"{output_prefix}.label_map.pbtxt", dataset.category_ids, dataset.class_names)
    paths = [f"{output_prefix}-{shard:05d}-of-{num_shards:05d}.tfrecord" for shard in range(num_shards)]
    count = len(dataset.records)
    images = zip(dataset.records, _file_names(dataset), encoded_images(dataset).as_numpy_iterator())
    written = 0
    for shard, path in enumerate(paths):
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range((shard + 1) * count // num_shards - shard * count // num_shards):
                record, file_name, encoded = next(images)
                encoded, image_format, file_name = _stored_image(encoded, record, file_name)
                writer.write(_serialize(dataset, record, encoded, image_format, file_name))
                written += 1
                if progress is not None:
                    progress(written)
    return paths


def write_images(dataset, folder, progress=None):
    """Writes the images of `dataset` into `folder` under unique, safe names (from `image/filename` for TFRecord
    datasets); returns the dataset with each record's `path` its file and no `image_source`.

    Images are written as stored, except those with an EXIF orientation other than 1 (upright PNG instead).
    `progress` as in `write_tfrecords`.
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    used, records = set(), []
    images = zip(dataset.records, _file_names(dataset), encoded_images(dataset).as_numpy_iterator())
    for record, file_name, encoded in images:
        encoded, image_format, file_name = _stored_image(encoded, record, file_name)
        path = os.path.join(folder, _unique_name(file_name, image_format, record.image_id, used))
        with open(path, "wb") as file:
            file.write(encoded)
        records.append(dataclasses.replace(record, path=path, orientation=1))
        if progress is not None:
            progress(len(records))
    return dataclasses.replace(dataset, records=records, image_source=None)


def _file_names(dataset):
    if isinstance(dataset.image_source, TFRecordImages):
        return dataset.image_source.file_names
    return [os.path.basename(record.path) for record in dataset.records]


def _stored_image(encoded, record, file_name):
    """(bytes, format, file name) to store for `record`: as is, or its upright pixels as PNG."""
    if record.orientation == 1:
        with Image.open(io.BytesIO(encoded)) as image:
            image_format = image.format.lower()
        return encoded, "jpeg" if image_format == "mpo" else image_format, file_name  # MPO: a camera's JPEG
    upright = tf.io.encode_png(decode_image(encoded, record.orientation)).numpy()
    return upright, "png", os.path.splitext(file_name)[0] + ".png"


def _serialize(dataset, record, encoded, image_format, file_name):
    """The `tf.Example` of `record`, serialized."""
    size = np.array([record.width, record.height] * 2, np.float64)
    boxes = (np.concatenate([record.boxes, record.ignore_boxes]).astype(np.float64) / size).astype(np.float32)
    labels = np.concatenate([record.labels, record.ignore_labels])
    crowd = [0] * len(record.boxes) + [1] * len(record.ignore_boxes)
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format.encode()]),
        "image/filename": _bytes([file_name.encode()]),
        "image/source_id": _bytes([str(record.image_id).encode()]),
        "image/height": _ints([record.height]),
        "image/width": _ints([record.width]),
        **{key: tf.train.Feature(float_list=tf.train.FloatList(value=boxes[:, k])) for k, key in enumerate(_BOX_KEYS)},
        "image/object/class/label": _ints(dataset.label_to_category_id(labels).tolist()),
        "image/object/class/text": _bytes([dataset.class_names[label].encode() for label in labels]),
        "image/object/is_crowd": _ints(crowd),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _unique_name(file_name, image_format, image_id, used):
    """A file name from `file_name` (its last component, characters outside [A-Za-z0-9._-] replaced), with an
    extension of `image_format`, not in `used` (compared case-insensitively); adds it to `used`."""
    stem, extension = os.path.splitext(os.path.basename(file_name.replace("\\", "/")))
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".") or f"image-{image_id}"
    if extension.lower() not in _EXTENSIONS[image_format]:
        extension = _EXTENSIONS[image_format][0]
    name, number = stem + extension, 1
    while name.lower() in used:
        number += 1
        name = f"{stem}-{number}{extension}"
    used.add(name.lower())
    return name


# `read_tfrecord` moved to `keras_retinanet.data.reading` (one signature for every format).
__getattr__ = moved_names(__name__, {"read_tfrecord": "keras_retinanet.data"})
