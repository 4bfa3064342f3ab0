"""The paper's optimizer: SGD with momentum and weight decay on a warm-up + step learning-rate schedule."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_retinanet")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `base * warmup_factor` to `base` over `warmup_steps`, then x `decay` at each of `steps`."""

    def __init__(self, base, steps, decay=0.1, warmup_steps=500, warmup_factor=1.0 / 3):
        self.base = float(base)
        self.steps = tuple(int(s) for s in steps)
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decays = tf.add_n([tf.cast(step >= s, tf.float32) for s in self.steps]) if self.steps else 0.0
        rate = self.base * self.decay**decays
        if self.warmup_steps > 0:
            progress = tf.minimum(step / self.warmup_steps, 1.0)
            rate *= self.warmup_factor + (1.0 - self.warmup_factor) * progress
        return rate

    def get_config(self):
        return {
            "base": self.base,
            "steps": self.steps,
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
        }


def make_optimizer(train_config):
    """SGD with momentum, weight decay and the warm-up + step schedule of `train_config`."""
    schedule = WarmupStepDecay(
        train_config.learning_rate,
        train_config.lr_steps,
        train_config.lr_decay,
        train_config.warmup_iterations,
        train_config.warmup_factor,
    )
    return keras.optimizers.SGD(
        schedule,
        momentum=train_config.momentum,
        weight_decay=train_config.weight_decay,
        global_clipnorm=train_config.clip_norm,
    )
