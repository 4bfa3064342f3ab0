"""Images without boxes and all-padding batches, through every stage: the labeler, the losses, `fit`, `predict`,
`detect` on files, `train` from a dataset of negatives, and the exported SavedModel (as torchvision's negative-sample
tests do)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.boxes import AnchorLabeler
from keras_retinanet.boxes.labels import AnchorTarget, GroundTruth
from keras_retinanet.config import load_config
from keras_retinanet.export import export_saved_model
from keras_retinanet.inference import detect, model_data_config
from keras_retinanet.layers import AnchorGenerator
from keras_retinanet.losses import FocalLoss, GIoULoss, L1Loss, SmoothL1Loss
from keras_retinanet.training import train
from tiny import TINY_MODEL_YAML, tiny_retinanet

MAX_BOXES = 4


def all_padding(batch_size):
    """Ground truth of `batch_size` images without a single box: every row padding."""
    return (np.zeros((batch_size, MAX_BOXES, 4), np.float32),
            np.full((batch_size, MAX_BOXES), GroundTruth.PADDING, np.int32))


def test_labeler_makes_every_anchor_background():
    anchors = AnchorGenerator()([128, 128])
    boxes, labels = all_padding(2)
    targets = AnchorLabeler()(anchors, boxes, labels)
    assert (targets["class_targets"].numpy() == AnchorTarget.BACKGROUND).all()
    assert not targets["box_targets"].numpy().any()
    np.testing.assert_array_equal(targets["matched_boxes"][0], anchors)  # unmatched anchors keep themselves


@pytest.mark.parametrize("box_loss", [SmoothL1Loss(), L1Loss(), GIoULoss()])
def test_losses_of_negatives_are_finite_and_normalised_by_one(box_loss):
    rng = np.random.default_rng(0)
    logits = rng.normal(-4.0, 1.0, (2, 50, 3)).astype(np.float32)
    labels = np.full((2, 50), AnchorTarget.BACKGROUND)
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected = np.sum(0.75 * probabilities**2 * -np.log(1.0 - probabilities))  # alpha 0.25: negatives weigh 0.75
    np.testing.assert_allclose(FocalLoss()(labels, logits).numpy(), expected, rtol=1e-5)
    boxes = np.abs(rng.normal(10, 3, (2, 50, 4))).astype(np.float32)
    boxes[..., 2:] += boxes[..., :2]
    no_positives = np.zeros((2, 50), np.float32)
    assert box_loss(boxes, boxes + 1.0, sample_weight=no_positives).numpy() == 0.0


def test_fit_and_predict_on_batches_without_boxes():
    keras.utils.set_random_seed(0)
    model = tiny_retinanet()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    images = np.random.default_rng(1).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    boxes, labels = all_padding(4)
    kernel_before = model.classification_head.output_conv.kernel.numpy()
    history = model.fit(images, {"boxes": boxes, "labels": labels}, batch_size=2, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["box_loss"] == [0.0, 0.0]
    assert not np.array_equal(model.classification_head.output_conv.kernel.numpy(), kernel_before)  # it learned
    detections = model.predict(images, verbose=0)
    assert detections["boxes"].shape[:2] == detections["scores"].shape == (4, model.decoder.max_detections)


@pytest.fixture(scope="module")
def negatives(tmp_path_factory):
    """A COCO-format dataset whose three images hold no object, and a tiny model `train` made from it."""
    root = tmp_path_factory.mktemp("negatives")
    (root / "images").mkdir()
    rng = np.random.default_rng(2)
    images = []
    for index in range(3):
        name = f"empty{index}.png"
        Image.fromarray(rng.integers(0, 255, (48, 72, 3), np.uint8)).save(root / "images" / name)
        images.append({"id": index + 1, "file_name": name, "height": 48, "width": 72})
    annotations = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (root / "instances.json").write_text(json.dumps(annotations))
    (root / "config.yaml").write_text(TINY_MODEL_YAML + f"""data:
  train: {{annotations: {root}/instances.json, images: {root}/images}}
  min_size: 64
  max_size: 96
  size_divisor: 32
  max_boxes: {MAX_BOXES}
train: {{batch_size: 2, iterations: 4, warmup_iterations: 1, lr_steps: [3], checkpoint_every: 2, eval_every: 4}}
""")
    model = train(load_config(str(root / "config.yaml")), str(root / "model"), verbose=0)
    return root, model, [str(root / "images" / image["file_name"]) for image in images]


def test_train_and_detect_on_a_dataset_of_negatives(negatives):
    _, model, paths = negatives
    assert int(model.optimizer.iterations.numpy()) == 4
    assert all(np.all(np.isfinite(weight.numpy())) for weight in model.weights)
    detections = detect(model, paths, model_data_config(model), batch_size=2)
    assert detections["boxes"].shape == (3, model.decoder.max_detections, 4)
    count = detections["num_detections"]
    assert all(np.all(detections["boxes"][i, :n] >= 0) for i, n in enumerate(count))


def test_saved_model_serves_negatives(negatives, tmp_path):
    root, model, paths = negatives
    export_saved_model(model, str(tmp_path / "export"))
    served = tf.saved_model.load(str(tmp_path / "export"))
    with open(paths[0], "rb") as stream:
        outputs = served.signatures["image_bytes"](encoded_images=tf.constant([stream.read()]))
    expected = detect(model, paths[:1], model_data_config(model), batch_size=1)
    count = int(expected["num_detections"][0])
    assert int(outputs["num_detections"][0]) == count
    np.testing.assert_allclose(outputs["detection_scores"][0, :count], expected["scores"][0, :count], atol=1e-5)
