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


def test_evaluation_maps_model_labels_to_the_dataset_classes_by_id_and_name(tmp_path):
    """Labels are positions in the model's class list: a dataset whose ids or names differ is refused (it would
    silently mislabel); a dataset with a subset of the model's classes (COCO's 80 of torchvision's 91) is scored on
    those, the other classes' detections left out."""
    from keras_retinanet.data import DataError, DetectionDataset
    from keras_retinanet.training import _result_category_ids
    from tiny import tiny_retinanet

    model = tiny_retinanet(num_classes=4)
    model.metadata = {"category_ids": [0, 1, 2, 3], "class_names": ["__background__", "cat", "N/A", "dog"]}
    subset = DetectionDataset([], ["cat", "dog"], [1, 3], source="val.json")
    assert _result_category_ids(model, subset) == [0, 1, 2, 3]
    for names, ids in ((["dog", "cat"], [1, 3]), (["cat", "dog"], [1, 2])):
        with pytest.raises(DataError, match=r"val.csv: classes \{.*\} \(category id: name\) are not classes of"):
            _result_category_ids(model, DetectionDataset([], names, ids, source="val.csv"))
    model.metadata = {}
    assert _result_category_ids(model, subset) == [1, 3]


def test_alpha_balanced_cross_entropy_trains_from_the_prior_initialisation(tmp_path):
    """Table 1a's baseline (gamma 0, alpha 0.75): confident anchors round p_t to 1 within 20 iterations here,
    where `(1 - p_t) ** 0` used to make the gradient NaN and stop training."""
    from keras_retinanet.datasets import generate_shapes_dataset
    from keras_retinanet.training import train
    from tiny import TINY_MODEL_YAML

    data = tmp_path / "data"
    generate_shapes_dataset(str(data), splits={"train": 8}, image_size=(96, 96), min_size=16, max_size=40,
                            max_objects=3)
    config_path = tmp_path / "ce.yaml"
    config_path.write_text(TINY_MODEL_YAML + f"""  focal_gamma: 0.0
  focal_alpha: 0.75
data:
  train: {{annotations: {data}/annotations/instances_train.json, images: {data}/train}}
  min_size: 96
  max_size: 96
  max_boxes: 8
train:
  batch_size: 4
  iterations: 60
  learning_rate: 0.01
  lr_steps: [60]
  warmup_iterations: 10
  checkpoint_every: 60
  eval_every: 60
""")
    config = load_config(str(config_path))
    assert config.model.focal_gamma == 0.0 and config.model.prior_probability == 0.01
    model = train(config, str(tmp_path / "model"), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 60
    assert all(np.all(np.isfinite(weight.numpy())) for weight in model.weights)
    class_bias = model.classification_head.output_conv.bias.numpy()
    assert class_bias.max() < -4.0  # trained on from the prior's -4.6, not from a NaN
