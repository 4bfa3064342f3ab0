"""`train` (`keras_retinanet.training`), in-process on tiny models."""

import numpy as np

from keras_retinanet.config import load_config
from keras_retinanet.datasets import generate_shapes_dataset
from keras_retinanet.training import train
from tiny import TINY_MODEL_YAML


def test_alpha_balanced_cross_entropy_trains_from_the_prior_initialisation(tmp_path):
    """Table 1a's baseline (gamma 0, alpha 0.75): confident anchors round p_t to 1 within 20 iterations here,
    where `(1 - p_t) ** 0` used to make the gradient NaN and stop training."""
    data = tmp_path / "data"
    generate_shapes_dataset(str(data), splits={"train": 8}, image_size=(96, 96), min_size=16, max_size=40,
                            max_objects=3)
    config_path = tmp_path / "ce.yaml"
    config_path.write_text(TINY_MODEL_YAML + f"""  focal_loss: {{alpha: 0.75, gamma: 0.0}}
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
    assert config.model.focal_loss.gamma == 0.0 and config.model.heads.prior_probability == 0.01
    model = train(config, str(tmp_path / "model"), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 60
    assert all(np.all(np.isfinite(weight.numpy())) for weight in model.weights)
    class_bias = model.classification_head.output_conv.bias.numpy()
    assert class_bias.max() < -4.0  # trained on from the prior's -4.6, not from a NaN
