"""Datasets we make (or fetch) for the demo and tests: `generate_shapes_dataset` writes a synthetic COCO-format
shapes dataset (`bin/generate_shapes` is its command line); `IMBALANCE_PRESET` is its paper-study geometry;
`COLOURS` the named colours of its colour-and-shape classes (`colours=N`)."""

from keras_retinanet.datasets.shapes import COLOURS, IMBALANCE_PRESET, SHAPE_CLASSES, SHAPES, generate_shapes_dataset

__all__ = ["COLOURS", "IMBALANCE_PRESET", "SHAPES", "SHAPE_CLASSES", "generate_shapes_dataset"]
