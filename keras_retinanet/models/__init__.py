"""The `RetinaNet` detector and `build_retinanet`, a detector from `config.model`.

Importing this package registers with Keras every class a saved detector names: its components' and, for a compiled
one, its learning-rate schedule's (`keras_retinanet.optimizers`).
"""

from keras_retinanet import optimizers  # noqa: F401
from keras_retinanet.models.factory import build_retinanet
from keras_retinanet.models.retinanet import RetinaNet

__all__ = ["RetinaNet", "build_retinanet"]
