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


# Logits from saturated to uncertain, both signs: sigmoid(+-20) and beyond round p_t to 1 (or 0) in float32.
EXTREME_LOGITS = np.array([-100.0, -60.0, -20.0, -17.0, -8.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 8.0, 17.0, 20.0, 60.0,
                           100.0], np.float32)


def _focal_float64(logits, targets, alpha, gamma):
    """Element losses FL and their gradients d FL / d logit (Eq. 10 with alpha_t) in float64, from log-sigmoids
    (`np.logaddexp`), so that neither rounds at saturation: z = y * x, y = +-1."""
    signs = 2.0 * targets - 1.0
    z = signs * logits.astype(np.float64)
    log_p_t = -np.logaddexp(0.0, -z)
    one_minus_p_t = np.exp(-np.logaddexp(0.0, z))
    alpha_t = 1.0 if alpha is None else np.where(targets == 1, alpha, 1.0 - alpha)
    modulating = np.exp(-gamma * np.logaddexp(0.0, z))  # (1 - p_t)^gamma
    losses = -alpha_t * modulating * log_p_t
    gradients = alpha_t * signs * modulating * (gamma * np.exp(log_p_t) * log_p_t - one_minus_p_t)
    return losses, gradients


def _loss_and_gradient(loss, labels, logits):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits)
    return value, tape.gradient(value, logits)


@pytest.mark.parametrize("alpha", [0.25, None])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_values_and_gradients_match_float64_for_every_gamma_and_logit(gamma, alpha):
    """Each logit of EXTREME_LOGITS as a positive, as a negative and ignored, in one batch of three anchors a logit
    and two classes: (class 0 target, logit x on class 0 and -x on class 1), then background, then ignored."""
    count = EXTREME_LOGITS.size
    logits = np.stack([EXTREME_LOGITS, -EXTREME_LOGITS], axis=-1)  # [count, 2]
    logits = np.concatenate([logits, logits, logits])[None]  # [1, 3 * count, 2]
    labels = np.array([0] * count + [-1] * count + [-2] * count)[None]
    value, gradient = _loss_and_gradient(FocalLoss(alpha=alpha, gamma=gamma), labels, logits)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(gradient.numpy()))

    targets = (labels[..., None] == np.arange(2)).astype(np.float64)
    losses, gradients = _focal_float64(logits, targets, alpha, gamma)
    ignored = labels[..., None] == -2
    losses, gradients = np.where(ignored, 0.0, losses), np.where(ignored, 0.0, gradients)
    np.testing.assert_allclose(value.numpy(), losses.sum() / count, rtol=1e-5)
    np.testing.assert_allclose(gradient.numpy(), gradients / count, rtol=1e-4, atol=1e-9)
    assert not gradient.numpy()[0, 2 * count:].any()  # ignored anchors get no gradient


def test_gamma_zero_drops_the_modulating_factor():
    """The issue's anchor: logits (20, -20, 0.3), class 0. Alpha-balanced cross-entropy exactly, gradient alpha_t *
    (p - y) also where p_t rounds to 1 (the factor 1^0 would have a 0 * inf derivative)."""
    logits = np.array([[[20.0, -20.0, 0.3]]], np.float32)
    value, gradient = _loss_and_gradient(FocalLoss(alpha=0.75, gamma=0.0), np.array([[0]]), logits)
    targets = np.array([1.0, 0.0, 0.0])
    x = logits[0, 0].astype(np.float64)
    alpha_t = np.array([0.75, 0.25, 0.25])
    cross_entropy = np.logaddexp(0.0, -(2.0 * targets - 1.0) * x)
    np.testing.assert_allclose(value.numpy(), np.sum(alpha_t * cross_entropy), rtol=1e-6)
    np.testing.assert_allclose(gradient.numpy()[0, 0], alpha_t * (1 / (1 + np.exp(-x)) - targets), rtol=1e-5,
                               atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_mixed_bfloat16_logits_give_finite_losses_and_gradients(gamma):
    rng = np.random.default_rng(5)
    logits = np.concatenate([rng.normal(0, 3, (1, 40, 3)), 100.0 * np.sign(rng.normal(size=(1, 10, 3)))], axis=1)
    labels = rng.choice([-2, -1, 0, 1, 2], size=(1, 50))
    reference = FocalLoss(gamma=gamma)(labels, logits.astype(np.float32)).numpy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        loss = FocalLoss(gamma=gamma)
        value, gradient = _loss_and_gradient(loss, labels, tf.cast(logits, tf.bfloat16))
    finally:
        keras.config.set_dtype_policy("float32")
    assert value.dtype == tf.float32 and gradient.dtype == tf.bfloat16
    assert np.all(np.isfinite(tf.cast(gradient, tf.float32).numpy()))
    np.testing.assert_allclose(value.numpy(), reference, rtol=0.05)  # logits rounded to bfloat16's 8 bits


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_probability_inputs_give_finite_gradients_at_0_and_1(gamma):
    probabilities = np.array([[[0.0, 1.0], [1.0, 0.0], [1e-9, 1 - 1e-9], [0.3, 0.7]]], np.float32)
    labels = np.array([[0, 1, -1, 0]])
    value, gradient = _loss_and_gradient(FocalLoss(gamma=gamma, from_logits=False), labels, probabilities)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(gradient.numpy()))
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    targets = (labels[..., None] == np.arange(2)).astype(np.float64)
    p_t = np.where(targets == 1, p, 1 - p)
    expected = (np.where(targets == 1, 0.25, 0.75) * (1 - p_t) ** gamma * -np.log(p_t)).sum() / 3
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_loss_star_is_finite_and_exact_at_saturation(gamma):
    logits = np.stack([EXTREME_LOGITS, -EXTREME_LOGITS], axis=-1)[None]
    labels = np.zeros((1, EXTREME_LOGITS.size), np.int64)
    beta = 1.0
    value, gradient = _loss_and_gradient(FocalLossStar(gamma, beta), labels, logits)
    signs = np.where(np.arange(2) == 0, 1.0, -1.0)
    argument = gamma * signs * logits.astype(np.float64) + beta
    expected = np.logaddexp(0.0, -argument) / gamma
    np.testing.assert_allclose(value.numpy(), expected.sum() / EXTREME_LOGITS.size, rtol=1e-5)
    expected_gradient = -signs / (1 + np.exp(argument)) / EXTREME_LOGITS.size
    np.testing.assert_allclose(gradient.numpy(), expected_gradient, rtol=1e-4, atol=1e-9)


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
