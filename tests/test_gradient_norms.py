"""Gradient norms before clipping, per loss term, and clipped steps (`compile(gradient_norms=True)`,
`train.log_gradient_norms`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_model import make_shapes
from tiny import tiny_retinanet


def _norms_by_hand(model, images, targets):
    """The gradient norms of one step computed independently: one tape per loss term."""
    norms = {}
    for name in ("classification", "box", "total"):
        with tf.GradientTape() as tape:
            terms = model._loss_terms(images, targets, model(images, training=True), None)
            loss = terms["classification"] if name == "classification" else terms["box"] + terms["regularization"]
            if name == "total":
                loss += terms["classification"]
        norms[name] = float(tf.linalg.global_norm(tape.gradient(loss, model.trainable_weights)))
    return norms


@pytest.mark.parametrize("clip_norm", [1e-3, 1e6])
def test_the_first_steps_norms_are_its_gradients_and_clipping_is_counted(clip_norm):
    images, boxes, labels = make_shapes(4, size=64)
    targets = {"boxes": boxes, "labels": labels}
    keras.utils.set_random_seed(0)
    model = tiny_retinanet()
    model.compile(optimizer=keras.optimizers.SGD(0.01, global_clipnorm=clip_norm), gradient_norms=True)
    expected = _norms_by_hand(model, tf.constant(images), targets)
    assert expected["classification"] > 0 and expected["box"] > 0
    logs = model.fit(images, targets, batch_size=4, epochs=1, verbose=0).history
    for key, name in (("gradient_norm", "total"), ("classification_gradient_norm", "classification"),
                      ("box_gradient_norm", "box")):
        np.testing.assert_allclose(logs[key][0], expected[name], rtol=1e-4)
    assert logs["clipped"] == [1.0 if clip_norm < expected["total"] else 0.0]


def test_the_update_is_keras_own_and_nothing_is_logged_or_saved_without_asking(tmp_path):
    images, boxes, labels = make_shapes(8, size=64)
    targets = {"boxes": boxes, "labels": labels}
    trained = {}
    for gradient_norms in (False, True):
        keras.utils.set_random_seed(0)
        model = tiny_retinanet()
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), gradient_norms=gradient_norms)
        history = model.fit(images, targets, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        assert ("gradient_norm" in history) == gradient_norms
        assert "clipped" not in history  # no clipping: nothing to count
        trained[gradient_norms] = model
    for plain, logged in zip(trained[False].get_weights(), trained[True].get_weights()):
        np.testing.assert_allclose(logged, plain, rtol=1e-5, atol=1e-6)
    # The trackers are no part of the saved model: it loads as one compiled without them.
    trained[True].save(tmp_path / "logged.keras")
    loaded = keras.saving.load_model(tmp_path / "logged.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.get_weights()[0], trained[True].get_weights()[0])
    assert not any(metric.name == "gradient_norm" for metric in loaded.metrics)


@pytest.mark.slow  # trains twice for about 10 s each: `make test-slow`
def test_train_logs_the_norms_to_tensorboard_unscaled_under_mixed_float16(tmp_path):
    """`train.log_gradient_norms`: TensorBoard gets the norms; under mixed_float16 they are of the unscaled loss
    (the dynamic loss scale starts at 2 ** 15), so they match float32's within half precision."""
    import glob

    from keras_retinanet.config import load_config
    from keras_retinanet.training import train
    from tiny import tiny_experiment_file

    norms = {}
    for policy in ("float32", "mixed_float16"):
        path = tiny_experiment_file(tmp_path, policy, iterations=3, warmup_iterations=1, train_yaml=(
            f"  dtype_policy: {policy}\n  log_gradient_norms: true\n  clip_norm: 10.0\n"))
        model = train(load_config(str(path)), str(tmp_path / policy), verbose=0)
        norms[policy] = float(model._gradient_norms.total.result())
    assert np.isfinite(norms["float32"]) and norms["float32"] > 0
    np.testing.assert_allclose(norms["mixed_float16"], norms["float32"], rtol=0.1)
    tags = set()
    for events in glob.glob(str(tmp_path / "float32" / "logs" / "train" / "events.out.tfevents.*")):
        tags |= {value.tag for event in tf.compat.v1.train.summary_iterator(events) for value in event.summary.value}
    assert {"epoch_gradient_norm", "epoch_classification_gradient_norm", "epoch_box_gradient_norm",
            "epoch_clipped"} <= tags
