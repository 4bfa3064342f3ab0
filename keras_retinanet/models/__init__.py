from keras_retinanet.models.retinanet import RetinaNet

__all__ = ["RetinaNet"]
