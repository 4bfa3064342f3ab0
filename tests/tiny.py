"""Tiny detector pieces for fast tests: a few-thousand-parameter backbone and RetinaNet."""

import keras
import numpy as np

from keras_retinanet import RetinaNet
from keras_retinanet.layers import FeaturePyramid, RetinaNetHead


def tiny_backbone(widths=(8, 16, 16, 32, 32)):
    """A plain conv backbone with the ResNet strides: images -> [C3, C4, C5] (strides 8, 16, 32)."""
    images = keras.Input(shape=(None, None, 3))
    x = keras.layers.Rescaling(1.0 / 255)(images)
    features = []
    for i, width in enumerate(widths):
        x = keras.layers.ZeroPadding2D(1)(x)
        x = keras.layers.Conv2D(width, 3, strides=2, activation="relu")(x)
        if i >= 2:
            features.append(x)
    return keras.Model(images, features, name="tiny_backbone")


def tiny_retinanet(num_classes=3, filters=16, num_convs=1, separable=False, **kwargs):
    """`separable`: the pyramid's and both heads' 3x3 convs depthwise-separable (the mobile design)."""
    return RetinaNet(
        backbone=tiny_backbone(),
        num_classes=num_classes,
        feature_pyramid=FeaturePyramid(filters=filters, separable=separable, name="feature_pyramid"),
        classification_head=RetinaNetHead(num_classes, filters=filters, num_convs=num_convs, prior_probability=0.01,
                                          separable=separable, name="classification_head"),
        box_head=RetinaNetHead(4, filters=filters, num_convs=num_convs, separable=separable, name="box_head"),
        **kwargs,
    )


# The model section of the command-line tests' experiment files: a quarter-width ResNet-18 that trains in seconds.
TINY_MODEL_YAML = """model:
  backbone: {depth: 18, width_multiplier: 0.25, normalization: batch_norm, frozen_stages: 0,
             preprocessing: torch, weights: null}
  anchors: {sizes: [16, 32, 64, 128, 256]}
  pyramid: {filters: 16}
  heads: {filters: 16, num_convs: 1}
"""


def spread_outputs(model, seed=0):
    """Random output layers for a barely trained `model`: two iterations leave every score near the prior 0.01;
    random weights spread scores and boxes, so that top-k and NMS pick clear winners and comparisons of exported
    models are not decided by float rounding."""
    rng = np.random.default_rng(seed)
    for head, scale in ((model.classification_head, 0.06), (model.box_head, 0.02)):
        *kernels, bias = head.output_conv.get_weights()  # a separable conv's: depthwise, pointwise
        head.output_conv.set_weights([*kernels[:-1], rng.normal(0.0, scale, kernels[-1].shape).astype(np.float32),
                                      np.zeros_like(bias)])


def trained_for_export(root, config_yaml, splits):
    """A tiny model trained by `train` for two iterations on generated 96 x 96 shapes in root/data (`splits`: {name:
    image count}) whose category ids are not label + 1 (exports must map labels to ids), its output layers then
    spread (`spread_outputs`) and saved in root/model. `config_yaml` names the data folder DATA. Returns (model,
    data folder, model folder)."""
    import json

    from keras_retinanet.config import load_config
    from keras_retinanet.datasets import generate_shapes_dataset
    from keras_retinanet.training import train

    data = root / "data"
    generate_shapes_dataset(str(data), splits=splits, image_size=(96, 96), min_size=16, max_size=40, max_objects=3)
    for split in splits:
        path = data / "annotations" / f"instances_{split}.json"
        annotations = json.loads(path.read_text())
        for item in annotations["categories"]:
            item["id"] = 10 * item["id"] + 3
        for item in annotations["annotations"]:
            item["category_id"] = 10 * item["category_id"] + 3
        path.write_text(json.dumps(annotations))
    config_path = root / "tiny.yaml"
    config_path.write_text(config_yaml.replace("DATA", str(data)))
    model_dir = root / "model"
    model = train(load_config(str(config_path)), str(model_dir), verbose=0)
    spread_outputs(model)
    model.save(str(model_dir / "model.keras"))
    return model, data, model_dir


# The experiment of the trained tiny model that the export and LiteRT tests share (conftest's `trained_tiny`); no
# validation split, whose evaluation at the end would double the training time: the modules add theirs
# (`copy_of_trained`).
TRAINED_TINY_CONFIG = TINY_MODEL_YAML + """  decoder: {score_threshold: 0.3, pre_nms_top_k: 100, max_detections: 40}
data:
  train: {annotations: DATA/annotations/instances_train.json, images: DATA/train}
  min_size: 96
  max_size: 160
  max_boxes: 8
train: {batch_size: 4, iterations: 2, warmup_iterations: 1, lr_steps: [2], checkpoint_every: 2, eval_every: 2}
"""


def copy_of_trained(trained, folder, config_yaml):
    """The session's trained tiny model (conftest's `trained_tiny`: its data and model folders) copied into
    folder/model and loaded from there, for one test module to use, change and write beside, storing the experiment
    config `config_yaml` (DATA names the data folder; the model and train sections must be the shared model's) as
    `train` run with it would have: the settings inference reads (the input sizes, the splits) are the module's own,
    without training again. Returns (model, data folder, model folder)."""
    import shutil

    from keras_retinanet.config import dump_config, load_config, to_dict
    from keras_retinanet.inference import load_trained_model

    data, trained_dir = trained
    model_dir = folder / "model"
    shutil.copytree(trained_dir, model_dir)
    model = load_trained_model(str(model_dir))
    config_path = folder / "tiny.yaml"
    config_path.write_text(config_yaml.replace("DATA", str(data)))
    config = load_config(str(config_path))
    stored = to_dict(config)
    for section in ("model", "train"):
        assert stored[section] == model.metadata["config"][section], f"{section} differs from the shared model's"
    model.metadata = {**model.metadata, "config": stored}
    model.save(str(model_dir / "model.keras"))
    dump_config(config, str(model_dir / "config.yaml"))
    return model, data, model_dir


def split_batch():
    """Four 64 x 64 images and their targets, for splitting into halves: images 0-1 hold four boxes, image 2 one
    and image 3 none, so the halves have different numbers of positive anchors."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    boxes = np.zeros((4, 3, 4), np.float32)
    labels = np.full((4, 3), -1, np.int32)
    boxes[0, :2], labels[0, :2] = [[4, 4, 36, 40], [30, 20, 60, 60]], [0, 2]
    boxes[1, :2], labels[1, :2] = [[10, 10, 30, 30], [0, 30, 40, 64]], [1, 1]
    boxes[2, :1], labels[2, :1] = [[20, 8, 52, 40]], [2]
    return images, {"boxes": boxes, "labels": labels}


def loss_and_gradients(model, x, y):
    """The model's loss on (x, y) and its gradients for the trainable variables."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)


def tiny_experiment_file(folder, name="tiny", iterations=20, checkpoint_every=None, lr_steps=None,
                         warmup_iterations=5, model_yaml="", train_yaml=""):
    """An experiment YAML (its path) in `folder`: the tiny model on 8 generated 96 x 96 shapes images (made once, in
    folder/data), batches of 4; checkpoints every `iterations` and one learning-rate step at the end unless said."""
    from keras_retinanet.datasets import generate_shapes_dataset

    data = folder / "data"
    if not data.exists():
        generate_shapes_dataset(str(data), splits={"train": 8}, image_size=(96, 96), min_size=16, max_size=40,
                                max_objects=3)
    path = folder / f"{name}.yaml"
    path.write_text(TINY_MODEL_YAML + model_yaml + f"""data:
  train: {{annotations: {data}/annotations/instances_train.json, images: {data}/train}}
  min_size: 96
  max_size: 96
  max_boxes: 8
train:
  batch_size: 4
  iterations: {iterations}
  learning_rate: 0.01
  lr_steps: {lr_steps or [iterations]}
  warmup_iterations: {warmup_iterations}
  checkpoint_every: {checkpoint_every or iterations}
  eval_every: {iterations}
""" + train_yaml)
    return path
