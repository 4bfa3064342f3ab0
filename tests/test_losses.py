"""The focal loss against the paper's equations, the box losses, and normalisation under tf.distribute."""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.losses import FocalLoss, FocalLossStar, GIoULoss, L1Loss, SmoothL1Loss


def _focal_numpy(logits, labels, alpha, gamma):
    """Eq. 5 in float64: labels hold a class, -1 (background) or -2 (ignored)."""
    logits = logits.astype(np.float64)
    num_classes = logits.shape[-1]
    targets = (labels[..., None] == np.arange(num_classes)).astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-logits))
    p_t = np.where(targets == 1, p, 1.0 - p)
    alpha_t = np.where(targets == 1, alpha, 1.0 - alpha)
    loss = -alpha_t * (1.0 - p_t) ** gamma * np.log(p_t)
    loss = loss * (labels != -2)[..., None]
    return loss.sum() / max(1, (labels >= 0).sum())


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 1.0), (0.75, 0.0)])
def test_focal_loss_equals_eq5_in_float64(alpha, gamma):
    rng = np.random.default_rng(int(gamma * 10))
    logits = rng.normal(0, 3, (3, 200, 5)).astype(np.float32)
    labels = rng.choice([-2, -1, -1, -1, 0, 1, 2, 3, 4], size=(3, 200))
    loss = FocalLoss(alpha=alpha, gamma=gamma)(labels, logits)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), _focal_numpy(logits, labels, alpha, gamma), rtol=1e-5)


def test_gamma_zero_is_alpha_balanced_cross_entropy():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (2, 50, 3)).astype(np.float32)
    labels = rng.choice([-1, 0, 1, 2], size=(2, 50))
    targets = (np.eye(3)[np.maximum(labels, 0)] * (labels >= 0)[..., None]).astype(np.float32)
    bce = keras.ops.binary_crossentropy(targets[..., None], logits[..., None], from_logits=True).numpy()[..., 0]
    alpha_t = np.where(targets == 1, 0.25, 0.75)
    expected = (alpha_t * bce).sum() / (labels >= 0).sum()
    np.testing.assert_allclose(FocalLoss(alpha=0.25, gamma=0.0)(labels, logits).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("p_t, factor", [(0.9, 100.0), (0.968, 1 / (0.032**2))])
def test_well_classified_examples_are_down_weighted(p_t, factor):
    logit = np.array([[[math.log(p_t / (1 - p_t))]]], np.float32)
    for labels, logits in [(np.array([[0]]), logit), (np.array([[-1]]), -logit)]:  # a positive and a negative
        focal = FocalLoss(alpha=None, gamma=2.0)(labels, logits).numpy()
        cross_entropy = FocalLoss(alpha=None, gamma=0.0)(labels, logits).numpy()
        np.testing.assert_allclose(cross_entropy / focal, factor, rtol=1e-3)
    assert factor == 100.0 or 950 < factor < 1000  # p_t = 0.968: "about 1000x"


def test_gradient_matches_eq10():
    x = np.linspace(-8, 8, 161).astype(np.float32)
    gamma = 2.0
    for y in (1.0, -1.0):
        logits = tf.constant(x[None, :, None])
        targets = np.full((1, x.size, 1), (y + 1) / 2, np.float32)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = FocalLoss(alpha=None, gamma=gamma)(targets, logits)
        gradient = tape.gradient(loss, logits).numpy().ravel()
        p = 1 / (1 + np.exp(-x.astype(np.float64)))
        p_t = p if y == 1 else 1 - p
        eq10 = y * (1 - p_t) ** gamma * (gamma * p_t * np.log(p_t) + p_t - 1)
        num_positives = x.size if y == 1 else 1
        np.testing.assert_allclose(gradient * num_positives, eq10, rtol=1e-4, atol=1e-7)


def test_dense_targets_with_sample_weight_equal_integer_labels():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 30, 4)).astype(np.float32)
    labels = rng.choice([-2, -1, 0, 1, 2, 3], size=(2, 30))
    dense = np.eye(4, dtype=np.float32)[np.maximum(labels, 0)] * (labels >= 0)[..., None]
    loss = FocalLoss()
    np.testing.assert_allclose(
        loss(dense, logits, sample_weight=(labels != -2).astype(np.float32)).numpy(),
        loss(labels, logits).numpy(),
        rtol=1e-6,
    )


def test_probabilities_input_matches_logits():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(1, 20, 3)).astype(np.float32)
    labels = rng.choice([-1, 0, 1, 2], size=(1, 20))
    np.testing.assert_allclose(
        FocalLoss(from_logits=False)(labels, tf.sigmoid(logits)).numpy(), FocalLoss()(labels, logits).numpy(), rtol=1e-4
    )


def test_focal_loss_star_appendix_a():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (2, 40, 3)).astype(np.float32)
    labels = rng.choice([-2, -1, 0, 1, 2], size=(2, 40))
    gamma, beta = 2.0, 1.0
    targets = (labels[..., None] == np.arange(3)).astype(np.float64)
    x_t = np.where(targets == 1, 1.0, -1.0) * logits
    p_star = 1 / (1 + np.exp(-(gamma * x_t + beta)))
    expected = (-np.log(p_star) / gamma * (labels != -2)[..., None]).sum() / (labels >= 0).sum()
    np.testing.assert_allclose(FocalLossStar(gamma, beta)(labels, logits).numpy(), expected, rtol=1e-5)


def test_box_losses_by_hand():
    y_true = np.zeros((1, 3, 4), np.float32)
    y_pred = np.array([[[0.05, -0.2, 1.0, 0.0], [9.0, 9.0, 9.0, 9.0], [0.1, 0.0, 0.0, 0.0]]], np.float32)
    positives = np.array([[1.0, 0.0, 1.0]], np.float32)
    beta = 0.11
    smooth = lambda e: 0.5 * e**2 / beta if abs(e) < beta else abs(e) - 0.5 * beta  # noqa: E731
    expected = (smooth(0.05) + smooth(0.2) + smooth(1.0) + smooth(0.1)) / 2
    np.testing.assert_allclose(SmoothL1Loss(beta)(y_true, y_pred, sample_weight=positives), expected, rtol=1e-6)
    np.testing.assert_allclose(L1Loss()(y_true, y_pred, sample_weight=positives), (1.25 + 0.1) / 2, rtol=1e-6)
    np.testing.assert_allclose(SmoothL1Loss(0.0)(y_true, y_pred, sample_weight=positives), (1.25 + 0.1) / 2, rtol=1e-6)


def test_box_loss_ignores_non_positive_anchors_even_if_infinite():
    y_true = np.array([[[0, 0, 0, 0], [np.inf, 0, 0, 0]]], np.float32)
    y_pred = np.zeros((1, 2, 4), np.float32)
    assert SmoothL1Loss()(y_true, y_pred, sample_weight=np.array([[1.0, 0.0]])).numpy() == 0.0


def test_giou_loss():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10]]], np.float32)
    predicted = np.array([[[0, 0, 10, 10], [20, 0, 30, 10]]], np.float32)
    np.testing.assert_allclose(GIoULoss()(boxes, predicted, sample_weight=np.ones((1, 2))), (0 + 4 / 3) / 2, rtol=1e-6)
    assert GIoULoss.target_space == "boxes" and L1Loss.target_space == "deltas"


def test_no_positives_normalises_by_one():
    logits = np.full((1, 4, 2), -2.0, np.float32)
    labels = np.full((1, 4), -1)
    expected = _focal_numpy(logits, labels, 0.25, 2.0)
    np.testing.assert_allclose(FocalLoss()(labels, logits).numpy(), expected, rtol=1e-5)


def test_losses_serialise():
    for loss in [FocalLoss(alpha=0.5, gamma=1.5), FocalLossStar(4.0, 0.0), SmoothL1Loss(0.2), L1Loss(), GIoULoss()]:
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)


def test_distributed_loss_and_gradients_equal_one_device():
    """Two logical CPU devices (MirroredStrategy) and one device give the same loss and gradients on one batch."""
    script = os.path.join(os.path.dirname(__file__), "distributed_loss_check.py")
    result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == 2
    # The per-replica positive counts differ, so a local normaliser would give a different loss.
    assert figures["positives_per_replica"][0] != figures["positives_per_replica"][1]
    np.testing.assert_allclose(figures["distributed_loss"], figures["single_loss"], rtol=1e-5)
    assert figures["max_gradient_relative_error"] < 1e-4
