"""The learning-rate schedule and the optimizer built from a config (`keras_retinanet.optimizers`)."""

import keras
import numpy as np
import pytest

from keras_retinanet.config import load_config
from keras_retinanet.optimizers import WarmupStepDecay, make_optimizer


def test_warmup_then_steps_as_detectron():
    schedule = WarmupStepDecay(0.01, steps=(60000, 80000), decay=0.1, warmup_steps=500, warmup_factor=1 / 3)
    rates = [float(schedule(step)) for step in (0, 250, 500, 59999, 60000, 79999, 80000, 89999)]
    np.testing.assert_allclose(rates, [0.01 / 3, 0.01 * 2 / 3, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001], rtol=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored.get_config() == schedule.get_config()


def test_optimizer_from_the_paper_config():
    optimizer = make_optimizer(load_config(None).train)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == pytest.approx(0.9) and optimizer.weight_decay == pytest.approx(1e-4)
    assert float(optimizer.learning_rate) == pytest.approx(0.01 / 3)  # iteration 0: warm-up start
