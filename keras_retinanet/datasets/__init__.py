"""Datasets we make (or fetch) for the demo and tests: `generate_shapes_dataset` writes a synthetic COCO-format
shapes dataset (`bin/generate_shapes` is its command line); `IMBALANCE_PRESET` is its paper-study geometry."""

from keras_retinanet.datasets.shapes import IMBALANCE_PRESET, SHAPE_CLASSES, SHAPES, generate_shapes_dataset

__all__ = ["IMBALANCE_PRESET", "SHAPES", "SHAPE_CLASSES", "generate_shapes_dataset"]
