"""Datasets for the demo and tests: `generate_shapes_dataset` writes a synthetic COCO-format shapes dataset.

The names are imported on first use, so that `python -m keras_retinanet.datasets.shapes` does not find its own
module already imported (runpy warns about that).
"""

__all__ = ["SHAPE_CLASSES", "generate_shapes_dataset"]


def __getattr__(name):
    if name in __all__:
        from keras_retinanet.datasets import shapes

        return getattr(shapes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
