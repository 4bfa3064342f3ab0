"""Detection datasets: the common record structure, the readers that produce it and the bad-input policy they share
(`keras_retinanet.data.policy`)."""

from keras_retinanet.data.coco import read_coco, to_coco_ground_truth
from keras_retinanet.data.csv import read_csv
from keras_retinanet.data.dataset import DetectionDataset, ImageRecord
from keras_retinanet.data.tfrecord import read_tfrecord, write_tfrecords
from keras_retinanet.data.policy import DataError, DataPolicy, DataReport
from keras_retinanet.data.voc import read_voc

FORMATS = ("coco", "voc", "csv", "tfrecord")


def read_dataset(format, annotations, images="", classes="", policy=DataPolicy()):
    """The `DetectionDataset` of one split in `format` (see `keras_retinanet.config.SplitConfig`); a DataError if
    no image is left to use, with the policy's counts of what it skipped."""
    dataset = _read(format, annotations, images, classes, policy)
    if not dataset.records:
        source = dataset.source or annotations
        summary = dataset.report.summary() if dataset.report is not None else ""
        counts = "; ".join(line.removeprefix(f"{dataset.report.source}: ") for line in summary.splitlines())
        raise DataError(f"{source}: no usable images ({counts or 'the annotations list none'})")
    return dataset


def _read(format, annotations, images, classes, policy):
    if not annotations:
        raise DataError("a data split needs 'annotations' (set data.<split>.annotations)")
    if format != "tfrecord" and not images:
        raise DataError(f"{annotations}: a {format} split needs 'images', the image folder (data.<split>.images)")
    if format == "coco":
        if classes:
            raise DataError(f"{annotations}: COCO files carry their categories; a class file ({classes}) is not used")
        return read_coco(annotations, images, policy)
    if format == "voc":
        return read_voc(annotations, images, classes or None, policy)
    if format == "csv":
        return read_csv(annotations, images, classes or None, policy)
    if format == "tfrecord":
        return read_tfrecord(annotations, classes or None, policy)
    raise DataError(f"unknown data format {format!r}; expected one of {FORMATS}")


__all__ = [
    "DataError", "DataPolicy", "DataReport", "DetectionDataset", "FORMATS", "ImageRecord", "read_coco", "read_csv",
    "read_dataset", "read_tfrecord", "read_voc", "to_coco_ground_truth", "write_tfrecords",
]
