"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) for TensorFlow 2 / Keras 3.

The package's parts: `backbones` (ResNet, C3-C5), `layers` (anchors, pyramid, heads, decoding), `boxes` (IoU, box
coding, matching, anchor labelling), `losses` (focal loss and box losses), `optimizers` (the paper's SGD schedule)
and `models` (the `RetinaNet` detector).
"""

__version__ = "0.1.0"

from keras_retinanet import backbones, boxes, layers, losses, optimizers  # optimizers: saved schedules load
from keras_retinanet.models import RetinaNet

__all__ = ["RetinaNet", "backbones", "boxes", "layers", "losses", "optimizers"]
