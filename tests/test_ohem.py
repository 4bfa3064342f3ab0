"""OHEM (Table 1d) against a numpy reference: loss scoring, NMS over the anchors, the 1:3 ratio, normalisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.config import ConfigError, load_config
from keras_retinanet.losses import OHEMLoss
from keras_retinanet.models import build_retinanet
from tests.tiny import loss_and_gradients, split_batch, tiny_retinanet


def _iou(box, boxes):
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    intersection = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return intersection / ((box[2] - box[0]) * (box[3] - box[1]) + areas - intersection)


def _greedy_nms(losses, candidates, anchors, threshold, limit):
    """Indices of up to `limit` candidates, hardest first, none overlapping a kept harder one by IoU > threshold."""
    kept = []
    for index in sorted(candidates, key=lambda i: -losses[i]):
        if len(kept) == limit:
            break
        if not kept or _iou(anchors[index], anchors[kept]).max() <= threshold:
            kept.append(index)
    return kept


def _ohem_numpy(labels, logits, anchors, batch_size, fraction, threshold):
    """The OHEM loss in float64 and the selected anchors of each image."""
    logits = logits.astype(np.float64)
    targets = labels[..., None] == np.arange(logits.shape[-1])
    cross_entropy = np.logaddexp(0, logits) - targets * logits  # -log sigmoid for targets 1, -log(1 - sigmoid) for 0
    losses = cross_entropy.sum(-1)
    selections = []
    for image_losses, image_labels in zip(losses, labels):
        valid = np.flatnonzero(image_labels != -2)
        if fraction is None:
            selected = _greedy_nms(image_losses, valid, anchors, threshold, batch_size)
        else:
            positives = [i for i in valid if image_labels[i] >= 0]
            negatives = [i for i in valid if image_labels[i] == -1]
            selected = _greedy_nms(image_losses, positives, anchors, threshold, int(batch_size * fraction))
            selected += _greedy_nms(image_losses, negatives, anchors, threshold, batch_size - len(selected))
        selections.append(sorted(selected))
    total = sum(losses[image, selected].sum() for image, selected in enumerate(selections))
    return total / max(1, sum(map(len, selections))), selections


def _problem(seed, num_anchors=120, num_classes=3):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100, (num_anchors, 2))
    sizes = rng.choice([8.0, 16.0, 24.0], (num_anchors, 1)) * rng.uniform(0.8, 1.25, (num_anchors, 2))
    anchors = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    logits = rng.normal(0, 2, (2, num_anchors, num_classes)).astype(np.float32)
    labels = rng.choice([-2, -1, -1, -1, -1, -1, 0, 1, 2], (2, num_anchors)).astype(np.int32)
    return labels, logits, anchors


@pytest.mark.parametrize("batch_size, fraction, threshold", [
    (16, None, 0.7), (16, 0.25, 0.7), (40, None, 0.5), (40, 0.25, 0.5), (500, None, 0.7), (500, 0.25, 0.7),
    (8, 1.0, 0.3),
])
def test_ohem_selects_and_normalises_like_the_numpy_reference(batch_size, fraction, threshold):
    labels, logits, anchors = _problem(batch_size)
    loss_fn = OHEMLoss(batch_size_per_image=batch_size, positive_fraction=fraction, nms_iou_threshold=threshold)
    expected, selections = _ohem_numpy(labels, logits, anchors, batch_size, fraction, threshold)
    np.testing.assert_allclose(loss_fn(labels, logits, anchors=anchors).numpy(), expected, rtol=1e-5)

    logits_variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, logits_variable, anchors=anchors)
    gradients = tape.gradient(loss, logits_variable).numpy()
    touched = [sorted(np.flatnonzero(np.abs(gradient).sum(-1) > 0)) for gradient in gradients]
    assert touched == selections  # only the selected anchors learn
    if batch_size < 100:  # NMS and the limit both bite: fewer anchors than the valid ones are used
        assert all(0 < len(selected) <= batch_size for selected in selections)
        assert sum(map(len, selections)) < (labels != -2).sum()
    if fraction is not None:
        for image_labels, selected in zip(labels, selections):
            assert (image_labels[selected] >= 0).sum() <= int(batch_size * fraction)


def test_ohem_under_xla_and_in_a_sharded_batch_matches_eager():
    labels, logits, anchors = _problem(3)
    loss_fn = OHEMLoss(batch_size_per_image=24, positive_fraction=0.25)
    compiled = tf.function(lambda y, x: loss_fn(y, x, anchors=anchors), jit_compile=True)
    np.testing.assert_allclose(compiled(labels, logits).numpy(), loss_fn(labels, logits, anchors=anchors).numpy(),
                               rtol=1e-5)


def test_ohem_needs_anchors_and_checks_its_arguments():
    labels, logits, _ = _problem(4)
    with pytest.raises(ValueError, match="needs the anchors"):
        OHEMLoss()(labels, logits)
    for arguments, message in [({"batch_size_per_image": 0}, "batch_size_per_image"),
                               ({"positive_fraction": 0.0}, "positive_fraction"),
                               ({"nms_iou_threshold": 1.5}, "nms_iou_threshold")]:
        with pytest.raises(ValueError, match=message):
            OHEMLoss(**arguments)


def test_ohem_from_the_config_trains_a_model_and_round_trips(tmp_path):
    config = load_config(None, ["model.classification_loss.type=ohem", "model.classification_loss.alpha=null",
                                "model.classification_loss.batch_size_per_image=64",
                                "model.classification_loss.positive_fraction=0.25", "model.backbone.weights=null",
                                "model.backbone.depth=18", "model.backbone.width_multiplier=0.25"])
    loss_fn = build_retinanet(config.model, num_classes=3).classification_loss
    assert isinstance(loss_fn, OHEMLoss)
    assert (loss_fn.batch_size_per_image, loss_fn.positive_fraction, loss_fn.alpha) == (64, 0.25, None)

    model = tiny_retinanet(classification_loss=OHEMLoss(batch_size_per_image=32, positive_fraction=0.25))
    images, targets = split_batch()
    loss, gradients = loss_and_gradients(model, images, targets)
    assert np.isfinite(loss.numpy()) and all(np.all(np.isfinite(g.numpy())) for g in gradients if g is not None)
    model.compile(optimizer="sgd")
    model.fit(images, targets, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "ohem.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.classification_loss.get_config() == model.classification_loss.get_config()


def test_a_setting_of_another_loss_type_is_a_config_error():
    with pytest.raises(ConfigError, match="'model.classification_loss.beta' does not apply to type 'focal'"):
        load_config(None, ["model.classification_loss.beta=0.0"])
    with pytest.raises(ConfigError, match="'model.classification_loss.type' must be one of"):
        load_config(None, ["model.classification_loss.type=hinge"])
    # The section's name in earlier releases.
    assert load_config(None, ["model.focal_loss.gamma=1.0"]).model.classification_loss.gamma == 1.0
