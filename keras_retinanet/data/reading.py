"""Reading a dataset in any format: the format's parser gives the annotated images and classes; this module applies,
once for every format, the images folder, the safety of each image path, the inspection of each image and the
bad-input policy (`keras_retinanet.data.policy`), and builds the `DetectionDataset`."""

import concurrent.futures
import dataclasses
import functools
import os
import warnings

import numpy as np

from keras_retinanet.data.coco import parse_coco
from keras_retinanet.data.csv import parse_csv
from keras_retinanet.data.dataset import DetectionDataset
from keras_retinanet.data.files import images_folder, safe_image_path
from keras_retinanet.data.images import ImageProblem, inspect_image
from keras_retinanet.data.policy import DataPolicy, DataReport, finish_record
from keras_retinanet.data.records import DataError, ImageInfo
from keras_retinanet.data.tfrecord import TFRecordImages, image_ids, parse_tfrecord
from keras_retinanet.data.voc import parse_voc

# The parser of each format that keeps its images in files: (annotations, classes) -> `Annotations`.
_FILE_PARSERS = {
    "coco": lambda annotations, classes: parse_coco(annotations),
    "voc": parse_voc,
    "csv": parse_csv,
}
FORMATS = ("coco", "voc", "csv", "tfrecord")
# Threads that check images while reading (PIL releases the GIL while it decodes).
INSPECTION_THREADS = min(8, (os.cpu_count() or 1) * 2)
# Images each inspection task checks: one task per image spent more time handing work to threads than inspecting.
_INSPECTION_CHUNK = 64
# Keywords the readers had before they shared one signature.
_OLD_KEYWORDS = {"annotations_path": "annotations", "pattern": "annotations", "images_dir": "images"}


def read_dataset(format, annotations, images="", classes="", policy=DataPolicy()):
    """The `DetectionDataset` of one split in `format` (see `keras_retinanet.config.SplitConfig`); a DataError if
    no image is left to use, with the policy's counts of what it skipped."""
    dataset = read(format, annotations, images, classes, policy)
    if not dataset.records:
        source = dataset.source or annotations
        summary = dataset.report.summary() if dataset.report is not None else ""
        counts = "; ".join(line.removeprefix(f"{dataset.report.source}: ") for line in summary.splitlines())
        raise DataError(f"{source}: no usable images ({counts or 'the annotations list none'})")
    return dataset


def read(format, annotations, images, classes, policy):
    """The `DetectionDataset` of `annotations` in `format`, images in the folder `images` (unused for TFRecord),
    classes from the class file `classes` (none for COCO; empty or None: those the annotations name), after the
    bad-input `policy`."""
    if not annotations:
        raise DataError("a data split needs 'annotations' (set data.<split>.annotations)")
    if format != "tfrecord" and not images:
        raise DataError(f"{annotations}: a {format} split needs 'images', the image folder (data.<split>.images)")
    if format == "coco" and classes:
        raise DataError(f"{annotations}: COCO files carry their categories; a class file ({classes}) is not used")
    if format == "tfrecord":
        return _examples_dataset(parse_tfrecord(annotations, classes or None), policy)
    if format not in _FILE_PARSERS:
        raise DataError(f"unknown data format {format!r}; expected one of {FORMATS}")
    source = os.fspath(annotations)
    folder = images_folder(images, source)
    parsed = _FILE_PARSERS[format](source, classes or None)
    real_folders = {}
    located = [dataclasses.replace(image, path=safe_image_path(folder, image.path, image.where, real_folders))
               for image in parsed.images]
    return finish_dataset(located, parsed.class_names, parsed.category_ids, parsed.source, policy)


def _one_signature(images_held=False):
    """A decorator: the reader, which takes (annotations, images=None, classes=None, policy=DataPolicy()), also
    taking the old forms of the readers, each with a DeprecationWarning: the keywords `annotations_path`,
    `pattern`, `images_dir`, and the positional orders `read_coco(annotations, images, policy)` and
    `read_tfrecord(pattern, classes, policy)` (`images_held`: the format holds its images, so a second positional
    argument is the old class file)."""
    def decorate(reader):
        name = reader.__name__

        @functools.wraps(reader)
        def read_in_any_form(*args, **kwargs):
            for old in sorted(_OLD_KEYWORDS.keys() & kwargs.keys()):
                new = _OLD_KEYWORDS[old]
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old!r} and its new name {new!r}")
                _deprecated(f"{name}({old}=...) is now {name}({new}=...)")
                kwargs[new] = kwargs.pop(old)
            if images_held and len(args) >= 2 and args[1] is not None:
                _deprecated(f"{name}(pattern, classes, policy) is now {name}(annotations, classes=..., policy=...)")
                args = (args[0], None, *args[1:])
            if len(args) == 3 and isinstance(args[2], DataPolicy):
                _deprecated(f"{name}(annotations, images, policy) is now {name}(annotations, images, policy=...)")
                args = (*args[:2], None, args[2])
            return reader(*args, **kwargs)

        return read_in_any_form

    return decorate


def _deprecated(message):
    warnings.warn(message, DeprecationWarning, stacklevel=4)  # the reader's caller


@_one_signature()
def read_coco(annotations, images=None, classes=None, policy=DataPolicy()):
    """Reads a COCO instances JSON (see `keras_retinanet.data.coco.parse_coco`) with its folder of `images` into a
    `DetectionDataset`, applying the bad-input `policy`. COCO files carry their categories: `classes` must be
    None. DataError for what the parser refuses, a path leaving `images`, and every skip of a strict policy."""
    return read("coco", annotations, images, classes, policy)


@_one_signature()
def read_voc(annotations, images=None, classes=None, policy=DataPolicy()):
    """Reads Pascal VOC XML annotations (see `keras_retinanet.data.voc.parse_voc`; `classes` a class file or None)
    with their folder of `images` (`VOC2007/JPEGImages`) into a `DetectionDataset`, applying the bad-input
    `policy`. DataError for what the parser refuses, a path leaving `images`, and every skip of a strict policy."""
    return read("voc", annotations, images, classes, policy)


@_one_signature()
def read_csv(annotations, images=None, classes=None, policy=DataPolicy()):
    """Reads a CSV annotation file (see `keras_retinanet.data.csv.parse_csv`; `classes` a class file or None) with
    the folder of `images` its paths are relative to into a `DetectionDataset`, applying the bad-input `policy`;
    stated sizes are checked against the images. DataError for what the parser refuses, a path leaving `images`,
    and every skip of a strict policy."""
    return read("csv", annotations, images, classes, policy)


@_one_signature(images_held=True)
def read_tfrecord(annotations, images=None, classes=None, policy=DataPolicy()):
    """Reads TFRecord shards (a file or a glob; see `keras_retinanet.data.tfrecord.parse_tfrecord`) into a
    `DetectionDataset`, applying the bad-input `policy`. The images stay in the files (`image_source`): `images`
    must be None. Examples are read, and their images checked and dropped, batch by batch, so the whole dataset is
    never in memory.

    Boxes are normalised to `image/width` and `image/height` (the image's own size when both are absent); a
    stated size that is not the image's is a `size_mismatch`. Images are used as stored: the TF Object Detection
    API ignores EXIF orientation, so every record has orientation 1. Image ids are the `image/source_id`s when
    all of them are integers, else 1, 2, ... in example order over the sorted shards (skipped examples counted).
    Each record's `path` is `SHARD#INDEX (FILENAME)`. DataError for what the parser refuses, duplicate integer
    source ids, and every skip of a strict policy.
    """
    if images:
        raise DataError(f"{annotations}: TFRecord files hold their images; an images folder ({images}) is not used")
    return read("tfrecord", annotations, images, classes, policy)


def finish_dataset(images, class_names, category_ids, source, policy):
    """The `DetectionDataset` of `AnnotatedImage`s (paths checked) after the policy: images inspected (in
    parallel), boxes turned upright, cleaned and clipped. Skipped images are left out; its `report` counts every
    skip and change."""
    report = DataReport(source, policy.strict)
    with concurrent.futures.ThreadPoolExecutor(max_workers=INSPECTION_THREADS) as pool:
        chunks = [images[start:start + _INSPECTION_CHUNK] for start in range(0, len(images), _INSPECTION_CHUNK)]
        infos = [info for chunk in pool.map(lambda chunk: [_inspect(image.path, policy) for image in chunk], chunks)
                 for info in chunk]
    records = []
    for image, info in zip(images, infos):
        if isinstance(info, ImageProblem):
            report.skip(info.reason, f"{image.where}: {info}")
            continue
        record = finish_record(image, info, report)
        if record is not None:
            records.append(record)
    return DetectionDataset(records, class_names, category_ids, source=source, report=report)


def _inspect(source, policy, name=None):
    """`ImageInfo` of an image file or encoded bytes, or the `ImageProblem` that makes the policy skip it."""
    try:
        return inspect_image(source, policy.verify_images, policy.max_image_pixels, name=name)
    except ImageProblem as problem:
        return problem


def _examples_dataset(examples, policy):
    """The `DetectionDataset` of `TFRecordExamples` after the policy; the images stay in the shards."""
    report = DataReport(examples.source, policy.strict)
    records, keep, locations, source_ids, file_names, shard_of_example = [], [], [], [], [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=INSPECTION_THREADS) as pool:
        for batch in examples.batches():
            infos = pool.map(lambda example: _inspect_example(example, policy), batch)
            for example, info in zip(batch, infos):
                locations.append(example.image.where)
                source_ids.append(example.source_id)
                shard_of_example.append(example.shard)
                record = _finish_example(example, info, report)
                keep.append(record is not None)
                if record is not None:
                    records.append(record)
                    file_names.append(example.file_name)
    category_ids, class_names = examples.classes()
    ids = image_ids(source_ids, locations)[np.array(keep)]
    # Records were made with category ids for labels (all checked known); now the contiguous labels.
    records = [
        dataclasses.replace(record, image_id=int(image_id), labels=np.searchsorted(category_ids, record.labels),
                            ignore_labels=np.searchsorted(category_ids, record.ignore_labels))
        for record, image_id in zip(records, ids)
    ]
    shard_sizes = np.bincount(shard_of_example, minlength=len(examples.shards))
    image_source = TFRecordImages(examples.shards, np.array(keep), tuple(file_names), tuple(map(int, shard_sizes)))
    return DetectionDataset(records, class_names, category_ids, source=examples.source, image_source=image_source,
                            report=report)


def _inspect_example(example, policy):
    """`ImageInfo` (orientation 1: images are used as stored) or the `ImageProblem` of the example's image."""
    if not example.encoded:
        return ImageProblem("missing_image", f"{example.image.where}: no image/encoded bytes")
    info = _inspect(example.encoded, policy, name=example.image.where)
    return info if isinstance(info, ImageProblem) else ImageInfo(info.width, info.height, 1)


def _finish_example(example, info, report):
    """The example's `ImageRecord` (labels still category ids) after the policy, or None when it is skipped."""
    if isinstance(info, ImageProblem):
        report.skip(info.reason, str(info))
        return None
    image = example.image
    width, height = image.stated_size or (info.width, info.height)
    size = np.array([width, height, width, height], np.float64)
    return finish_record(dataclasses.replace(image, boxes=image.boxes * size, ignore_boxes=image.ignore_boxes * size),
                         info, report)
