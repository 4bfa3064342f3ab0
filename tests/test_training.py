"""`train` (`keras_retinanet.training`), in-process on tiny models."""

import numpy as np
import pytest

from keras_retinanet.config import load_config
from keras_retinanet.training import train
from tiny import tiny_experiment_file


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_alpha_balanced_cross_entropy_trains_from_the_prior_initialisation(tmp_path):
    """Table 1a's baseline (gamma 0, alpha 0.75): confident anchors round p_t to 1 within 20 iterations here,
    where `(1 - p_t) ** 0` used to make the gradient NaN and stop training."""
    config = _tiny_experiment(tmp_path, "float32", iterations=60, warmup_iterations=10,
                              model_yaml="  classification_loss: {alpha: 0.75, gamma: 0.0}\n")
    assert config.model.classification_loss.gamma == 0.0 and config.model.heads.prior_probability == 0.01
    model = train(config, str(tmp_path / "model"), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 60
    assert all(np.all(np.isfinite(weight.numpy())) for weight in model.weights)
    class_bias = model.classification_head.output_conv.bias.numpy()
    assert class_bias.max() < -4.0  # trained on from the prior's -4.6, not from a NaN


def _tiny_experiment(tmp_path, dtype_policy, iterations=20, warmup_iterations=5, model_yaml=""):
    return load_config(str(tiny_experiment_file(tmp_path, dtype_policy, iterations, warmup_iterations=warmup_iterations,
                                                model_yaml=model_yaml, train_yaml=f"  dtype_policy: {dtype_policy}\n")))


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_mixed_bfloat16_training_follows_float32_and_is_saved_with_the_model(tmp_path):
    """20 iterations from the same initial weights on the same batches: the mean loss under mixed_bfloat16 is that
    of float32 within bfloat16's precision, and model.keras loads with bfloat16 compute and float32 weights."""
    import keras

    from keras_retinanet.inference import load_trained_model

    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        model = train(_tiny_experiment(tmp_path, policy), str(tmp_path / policy), verbose=0)
        losses[policy] = float(model.total_loss_tracker.result())
        assert model.backbone.get_layer("conv1_conv").compute_dtype == policy.removeprefix("mixed_")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert np.isfinite(losses["float32"]) and losses["float32"] > 0
    assert abs(losses["mixed_bfloat16"] - losses["float32"]) < 0.05 * losses["float32"]
    loaded = load_trained_model(str(tmp_path / "mixed_bfloat16"))
    conv = loaded.backbone.get_layer("conv1_conv")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert loaded.predict_on_batch(np.zeros([1, 96, 96, 3], np.float32))["scores"].dtype == np.float32


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_mixed_float16_training_scales_the_loss(tmp_path):
    import keras

    model = train(_tiny_experiment(tmp_path, "mixed_float16", iterations=5), str(tmp_path / "fp16"), verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(float(model.total_loss_tracker.result()))
    assert all(np.all(np.isfinite(weight.numpy())) for weight in model.trainable_weights)


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_deterministic_training_repeats_bit_for_bit_in_a_second_process(tmp_path):
    """train.deterministic: two runs of the same experiment, each in its own process, end with identical weights
    (every bit); XLA on, as the demo trains."""
    import os
    import subprocess
    import sys

    import keras

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
    config = tiny_experiment_file(tmp_path, iterations=6, train_yaml="  jit_compile: true\n  deterministic: true\n")
    weights = []
    for run in ("first", "second"):
        process = subprocess.run(
            [sys.executable, os.path.join(root, "bin", "train"), f"--config={config}",
             f"--model_dir={tmp_path / run}", "--verbose=0"],
            capture_output=True, text=True, timeout=600, cwd=root, env={**os.environ, "PYTHONPATH": root})
        assert process.returncode == 0, process.stderr[-3000:]
        model = keras.saving.load_model(tmp_path / run / "model.keras", safe_mode=True)
        weights.append([variable.numpy() for variable in model.weights])
    assert int(model.optimizer.iterations.numpy()) == 6
    for first, second in zip(*weights):
        assert first.tobytes() == second.tobytes()
