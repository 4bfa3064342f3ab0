from keras_retinanet.models.factory import build_retinanet
from keras_retinanet.models.retinanet import RetinaNet

__all__ = ["RetinaNet", "build_retinanet"]
