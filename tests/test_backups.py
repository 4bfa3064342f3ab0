"""Backups that survive a crash: atomic writes, the previous backup when the newest cannot be read, a clear error
when none can, `--restart`; and `bin/train` killed with SIGKILL at random moments, resumed to the same weights."""

import logging
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_retinanet.training import BackupError, Backups
from tiny import tiny_experiment_file, tiny_retinanet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def model():
    import keras

    model = tiny_retinanet()
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    model.optimizer.build(model.trainable_variables)
    return model


def _mark(model, value):
    """Sets every weight to `value`, so that a restored backup shows which one it was."""
    for weight in model.weights:
        weight.assign(np.full(weight.shape, value, weight.dtype))


def _value(model):
    return float(model.weights[0].numpy().flat[0])


def test_the_newest_two_backups_are_kept_and_the_newest_restored(model, tmp_path):
    backups = Backups(tmp_path / "backup")
    for epoch in (1, 2, 3):
        _mark(model, epoch)
        backups.save(model, epoch)
    assert backups.epochs() == [3, 2]
    assert sorted(os.listdir(tmp_path / "backup")) == ["epoch-2.json", "epoch-2.weights.h5", "epoch-3.json",
                                                        "epoch-3.weights.h5"]
    _mark(model, 0)
    assert backups.restore(model) == 3 and _value(model) == 3


def test_an_unreadable_newest_backup_falls_back_to_the_previous_one_and_says_so(model, tmp_path, caplog):
    backups = Backups(tmp_path / "backup")
    for epoch in (1, 2):
        _mark(model, epoch)
        backups.save(model, epoch)
    newest = tmp_path / "backup" / "epoch-2.weights.h5"
    newest.write_bytes(newest.read_bytes()[:1000])  # a disk that lost the end of the file
    with caplog.at_level(logging.WARNING):
        assert backups.restore(model) == 1 and _value(model) == 1
    assert f"backup {newest} could not be read" in caplog.text
    assert "resumed from the older backup" in caplog.text and "epoch-1.weights.h5 (epoch 1)" in caplog.text


def test_no_readable_backup_is_an_error_naming_the_files_and_the_way_to_start_over(model, tmp_path):
    backups = Backups(tmp_path / "backup")
    for epoch in (1, 2):
        backups.save(model, epoch)
    (tmp_path / "backup" / "epoch-2.weights.h5").write_bytes(b"")
    (tmp_path / "backup" / "epoch-1.json").write_text("{")  # a corrupt metadata file
    with pytest.raises(BackupError) as error:
        backups.restore(model)
    message = str(error.value)
    assert "epoch-2.weights.h5: OSError" in message and "epoch-1.weights.h5: JSONDecodeError" in message
    assert "rerun with --restart" in message
    aside = backups.move_aside()
    assert aside.startswith(str(tmp_path / "backup.discarded-")) and os.listdir(aside)
    assert backups.restore(model) == 0  # nothing is left to resume: the start


def test_a_folder_of_other_files_is_not_taken_for_no_backup(model, tmp_path, caplog):
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "latest.weights.h5").write_bytes(b"from another version")
    with pytest.raises(BackupError, match="holds no backup but other files .latest.weights.h5"):
        Backups(folder).restore(model)
    (folder / "latest.weights.h5").unlink()
    (folder / "writing-123.weights.h5").write_bytes(b"half")  # killed while writing the first backup
    with caplog.at_level(logging.WARNING):
        assert Backups(folder).restore(model) == 0
    assert "the first backup was interrupted while written (writing-123.weights.h5)" in caplog.text


def _experiment(tmp_path):
    return tiny_experiment_file(tmp_path, iterations=60, checkpoint_every=4, lr_steps=[45])


def _train(config, model_dir):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bin", "train"), f"--config={config}", f"--model_dir={model_dir}",
         "--verbose=0"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_DETERMINISTIC_OPS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def _weights(model_dir):
    import keras

    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    return int(model.optimizer.iterations.numpy()), [weight.numpy() for weight in model.weights]


def _wait_for(condition, process, timeout=300):
    """Polls `condition` every millisecond until it holds (True) or `process` has ended (False); fails the test if
    neither happens within `timeout` seconds, which no machine should need."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"nothing happened in {timeout} s"
        time.sleep(0.001)
    return True


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`, which CI runs too
def test_bin_train_killed_at_random_moments_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    """SIGKILL at random moments, once while a backup is being written; each rerun of the same command resumes
    from the last complete backup with the batches that come next, so the final weights are those of a run that
    was never stopped (TensorFlow's op determinism on). The moments are events of the run, not times, so that they
    fall in training on any machine: the first file of a backup being written, or a random point of a random
    checkpoint interval (a fraction of the time the interval before it took)."""
    config = _experiment(tmp_path)  # 15 checkpoint intervals
    uninterrupted = _train(config, tmp_path / "uninterrupted")
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stderr.read()[-3000:]

    model_dir = tmp_path / "killed"
    backup, backups = model_dir / "backup", Backups(model_dir / "backup")
    moments = random.Random(0)
    kills, killed_while_writing = 0, False
    for attempt in range(6):
        process = _train(config, model_dir)
        newest = (backups.epochs() or [0])[0]
        if attempt == 0:  # the moment a backup's file is being written
            alive = _wait_for(lambda: backup.exists() and any(
                name.startswith("writing-") for name in os.listdir(backup)), process)
        else:  # in interval `target`, timed by the two before it (not the first after a start: it holds the start-up)
            target = newest + 3 + moments.randrange(2)
            if target > 15:  # beyond the end: this run finishes
                break
            alive = _wait_for(lambda: (backups.epochs() or [0])[0] >= target - 2, process)
            started = time.monotonic()
            alive = alive and _wait_for(lambda: backups.epochs()[0] >= target - 1, process)
            time.sleep(moments.uniform(0.0, 1.0) * (time.monotonic() - started))
        if not alive or process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        writing = [name for name in os.listdir(backup) if name.startswith("writing-")] if backup.exists() else []
        killed_while_writing |= bool(writing)
    else:
        process = _train(config, model_dir)
    process.wait(timeout=600)
    assert process.returncode == 0, process.stderr.read()[-3000:]
    assert kills >= 2 and killed_while_writing

    iterations, weights = _weights(model_dir)
    expected_iterations, expected = _weights(tmp_path / "uninterrupted")
    assert iterations == expected_iterations == 60
    for weight, reference in zip(weights, expected):
        np.testing.assert_array_equal(weight, reference)
