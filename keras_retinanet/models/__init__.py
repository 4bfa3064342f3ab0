"""The `RetinaNet` detector; `build_retinanet`, a detector from `config.model`, and `build_detector`, one of an
experiment's config for a dataset's classes.

Importing this package registers with Keras every class a saved detector names: its components' and, for a compiled
one, its learning-rate schedule's (`keras_retinanet.optimizers`).
"""

from keras_retinanet import optimizers  # noqa: F401
from keras_retinanet.models.factory import build_detector, build_retinanet
from keras_retinanet.models.retinanet import RetinaNet

__all__ = ["RetinaNet", "build_detector", "build_retinanet"]
