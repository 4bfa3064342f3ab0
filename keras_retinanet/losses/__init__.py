"""RetinaNet's losses: the focal loss and its variants, and box regression losses.

Every loss here sums over anchors and divides by the number of positive anchors of the *global* batch (at least
one), as the paper does (OHEM: by the number of anchors it selected); under `tf.distribute` the count is summed
over all replicas, so that the loss and its gradients do not depend on the number of devices.
"""

from keras_retinanet.losses.box import GIoULoss, L1Loss, SmoothL1Loss
from keras_retinanet.losses.focal import FocalLoss, FocalLossStar
from keras_retinanet.losses.ohem import OHEMLoss

# The box losses a config names (`model.box_loss.type`).
BOX_LOSSES = {"smooth_l1": SmoothL1Loss, "l1": L1Loss, "giou": GIoULoss}
# The classification losses a config names (`model.classification_loss.type`).
CLASSIFICATION_LOSSES = {"focal": FocalLoss, "focal_star": FocalLossStar, "ohem": OHEMLoss}

__all__ = ["BOX_LOSSES", "CLASSIFICATION_LOSSES", "FocalLoss", "FocalLossStar", "GIoULoss", "L1Loss", "OHEMLoss",
           "SmoothL1Loss"]
