"""The learning-rate schedule and the optimizer built from a config."""

import keras
import numpy as np
import pytest

from keras_retinanet.config import load_config
from keras_retinanet.training import WarmupStepDecay, make_optimizer


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


def test_evaluation_refuses_a_dataset_with_other_classes_than_the_model(tmp_path):
    """Labels are positions in the class list: evaluating on another list would silently mislabel."""
    from keras_retinanet.config import DataConfig
    from keras_retinanet.data import DataError, DetectionDataset
    from keras_retinanet.training import evaluate_model
    from tiny import tiny_retinanet

    model = tiny_retinanet(num_classes=2)
    model.metadata = {"class_names": ["cat", "dog"]}
    dataset = DetectionDataset([], ["dog", "cat"], [1, 2], source="val.csv")
    with pytest.raises(DataError, match=r"val.csv: the model was trained on classes \['cat', 'dog'\], the dataset"):
        evaluate_model(model, dataset, DataConfig(), batch_size=1)
