"""Detection datasets: the common record structure, the readers that produce it (`reading.py`: one signature for
every format, each format's module a parser) and the bad-input policy they share (`keras_retinanet.data.policy`)."""

from keras_retinanet.data.coco import to_coco_ground_truth
from keras_retinanet.data.dataset import DetectionDataset, ImageRecord
from keras_retinanet.data.policy import DataError, DataPolicy, DataReport
from keras_retinanet.data.reading import FORMATS, read_coco, read_csv, read_dataset, read_tfrecord, read_voc
from keras_retinanet.data.tfrecord import write_tfrecords

__all__ = [
    "DataError", "DataPolicy", "DataReport", "DetectionDataset", "FORMATS", "ImageRecord", "read_coco", "read_csv",
    "read_dataset", "read_tfrecord", "read_voc", "to_coco_ground_truth", "write_tfrecords",
]
