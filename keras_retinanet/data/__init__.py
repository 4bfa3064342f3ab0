"""Detection datasets: the common record structure and the readers that produce it."""

from keras_retinanet.data.coco import read_coco
from keras_retinanet.data.records import DetectionDataset, ImageRecord

__all__ = ["DetectionDataset", "ImageRecord", "read_coco"]
