"""The focal loss (Eq. 5 of the paper) and FL* (Appendix A)."""

import keras
import tensorflow as tf

from keras_retinanet.boxes.labels import AnchorTarget
from keras_retinanet.losses.normalized import PositiveNormalizedLoss


class _ClassificationLoss(PositiveNormalizedLoss):
    """Shared target handling of the per-class sigmoid losses.

    `y_true` is either
      - integer labels [B, N] (one fewer dimension than the logits): a class index for a positive anchor, else an
        `AnchorTarget` value, BACKGROUND (-1) or IGNORED (-2) (the `AnchorLabeler`'s `class_targets`); or
      - dense 0/1 targets [B, N, K] like the logits (multi-label allowed); then `sample_weight` [B, N] masks anchors.
    An anchor is positive when any of its targets is 1.

    `alpha` weights positive targets by alpha and negative ones by 1 - alpha; None leaves them unweighted.
    """

    def __init__(self, alpha, name, **kwargs):
        super().__init__(name=name, **kwargs)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{type(self).__name__} alpha must be in [0, 1] or None, got {alpha}")
        self.alpha = None if alpha is None else float(alpha)

    def element_losses(self, targets, logits):
        """Loss of every (anchor, class) pair from 0/1 `targets` and `logits`, both [..., K]."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config

    def _balance(self, losses, targets):
        if self.alpha is None:
            return losses
        return losses * (targets * self.alpha + (1.0 - targets) * (1.0 - self.alpha))

    def anchor_losses(self, y_true, y_pred, sample_weight):
        if y_true.shape.rank == y_pred.shape.rank - 1:
            labels = tf.cast(y_true, tf.int32)
            targets = tf.one_hot(labels, tf.shape(y_pred)[-1], dtype=y_pred.dtype)  # -1 and -2: all zeros
            weights = tf.cast(labels != AnchorTarget.IGNORED, y_pred.dtype)
        else:
            targets = tf.cast(y_true, y_pred.dtype)
            weights = tf.ones_like(y_pred[..., 0])
        if sample_weight is not None:
            weights = weights * sample_weight
        positives = tf.cast(tf.reduce_max(targets, axis=-1) > 0.5, y_pred.dtype) * tf.cast(weights > 0, y_pred.dtype)
        return tf.reduce_sum(self.element_losses(targets, y_pred), axis=-1), weights, positives


@keras.saving.register_keras_serializable(package="keras_retinanet")
class FocalLoss(_ClassificationLoss):
    """FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), summed over all non-ignored anchors and classes, divided by the
    number of positive anchors.

    gamma = 0 is alpha-balanced cross-entropy, computed as such (the modulating factor dropped). On logits
    (`from_logits=True`, the paper's form) both factors come from log-sigmoids of the signed logit z = +-x:
    log(p_t) = log sigmoid(z) and (1 - p_t)^gamma = exp(gamma log sigmoid(-z)), finite in value and gradient for
    every gamma >= 0 and every logit, where `(1 - p_t) ** gamma` has an infinite (0 < gamma < 1) or 0 * inf
    (gamma = 0) derivative once p_t rounds to 1. Targets are 0 or 1.

    Args:
        alpha: weight of the positive class (1 - alpha for negatives); None for no balancing. Paper: 0.25.
        gamma: focusing parameter >= 0. Paper: 2.
        from_logits: True for logits (stable, the paper's form); False for probabilities (clipped to
            [1e-7, 1 - 1e-7], as Keras' cross-entropy clips them).
    """

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=True, name="focal_loss", **kwargs):
        super().__init__(alpha, name=name, **kwargs)
        if gamma < 0:
            raise ValueError(f"FocalLoss gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def element_losses(self, targets, logits):
        if self.from_logits:
            signed = (2.0 * targets - 1.0) * logits  # z: p_t = sigmoid(z)
            losses = tf.nn.softplus(-signed)  # -log(p_t)
            if self.gamma:
                losses *= tf.exp(-self.gamma * tf.nn.softplus(signed))  # (1 - p_t)^gamma
        else:
            epsilon = keras.config.epsilon()
            p_t = tf.clip_by_value(targets * logits + (1.0 - targets) * (1.0 - logits), epsilon, 1.0 - epsilon)
            losses = -tf.math.log(p_t)
            if self.gamma:
                losses *= (1.0 - p_t) ** self.gamma
        return self._balance(losses, targets)

    def get_config(self):
        config = super().get_config()
        config.update({"gamma": self.gamma, "from_logits": self.from_logits})
        return config


@keras.saving.register_keras_serializable(package="keras_retinanet")
class FocalLossStar(_ClassificationLoss):
    """FL* of Appendix A: -log(sigmoid(gamma * y * x + beta)) / gamma with y in {-1, +1}, on logits x.

    Same targets and normalisation as `FocalLoss`. The paper reports about the same AP as FL.

    Args:
        gamma: steepness (> 0). beta: shift. alpha: optional class balancing as in `FocalLoss` (None: none).
    """

    def __init__(self, gamma=2.0, beta=1.0, alpha=None, name="focal_loss_star", **kwargs):
        super().__init__(alpha, name=name, **kwargs)
        if gamma <= 0:
            raise ValueError(f"FocalLossStar gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)
        self.beta = float(beta)

    def element_losses(self, targets, logits):
        signs = 2.0 * targets - 1.0
        return self._balance(tf.nn.softplus(-(self.gamma * signs * logits + self.beta)) / self.gamma, targets)

    def get_config(self):
        config = super().get_config()
        config.update({"gamma": self.gamma, "beta": self.beta})
        return config
