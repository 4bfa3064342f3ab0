from keras_retinanet.layers.frozen_batch_norm import FrozenBatchNormalization
from keras_retinanet.layers.group_normalization import GroupNormalization
from keras_retinanet.layers.image_normalization import ImageNormalization
from keras_retinanet.layers.anchor_generator import AnchorGenerator
from keras_retinanet.layers.detection_decoder import DetectionDecoder
from keras_retinanet.layers.feature_pyramid import FeaturePyramid
from keras_retinanet.layers.heads import RetinaNetHead

__all__ = [
    "AnchorGenerator", "DetectionDecoder", "FeaturePyramid", "FrozenBatchNormalization", "GroupNormalization",
    "ImageNormalization", "RetinaNetHead",
]
