"""Datasets we make (or fetch) for the demo and tests: `generate_shapes_dataset` writes a synthetic COCO-format
shapes dataset (`bin/generate_shapes` is its command line)."""

from keras_retinanet.datasets.shapes import SHAPE_CLASSES, generate_shapes_dataset

__all__ = ["SHAPE_CLASSES", "generate_shapes_dataset"]
