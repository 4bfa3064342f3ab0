"""Training on several workers: each worker's share of the data, the first step of two worker processes against
one process, `bin/train --strategy=multi_worker` killed and resumed, and what the strategies refuse."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_retinanet.data import read_coco
from keras_retinanet.data import read_tfrecord, write_tfrecords
from keras_retinanet.datasets import generate_shapes_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    paths = generate_shapes_dataset(str(folder), splits={"train": 11}, image_size=(64, 80), min_size=16,
                                    max_size=32, max_objects=2)
    return read_coco(paths["train"], str(folder / "train")), folder


def _image_bytes(dataset):
    from keras_retinanet.data.pipeline import encoded_images

    return [bytes(encoded.numpy()) for encoded in encoded_images(dataset)]


def _check_shares(dataset, shares):
    ids = [[record.image_id for record in share.records] for share in shares]
    assert sorted(sum(ids, [])) == sorted(record.image_id for record in dataset.records)  # disjoint, complete
    everything = dict(zip((r.image_id for r in dataset.records), _image_bytes(dataset)))
    for share, share_ids in zip(shares, ids):
        assert _image_bytes(share) == [everything[i] for i in share_ids]  # each record keeps its own image


def test_shares_of_image_files_are_disjoint_and_complete(shapes):
    dataset, _ = shapes
    shares = [dataset.shard(index, 3) for index in range(3)]
    assert [len(share.records) for share in shares] == [4, 4, 3]
    _check_shares(dataset, shares)
    assert dataset.shard(0, 1) is dataset
    with pytest.raises(ValueError, match="11 images cannot be shared by 12 workers"):
        dataset.shard(0, 12)


def test_tfrecord_shares_are_whole_files_when_there_are_enough(shapes, tmp_path):
    dataset, _ = shapes
    shards = write_tfrecords(dataset, str(tmp_path / "four" / "train"), num_shards=4)
    records = read_tfrecord(str(tmp_path / "four" / "train-*.tfrecord"))
    shares = [records.shard(index, 2) for index in range(2)]
    assert [share.image_source.shards for share in shares] == [(shards[0], shards[2]), (shards[1], shards[3])]
    _check_shares(records, shares)


def test_tfrecord_shares_are_every_nth_record_with_fewer_files_than_workers(shapes, tmp_path):
    dataset, _ = shapes
    write_tfrecords(dataset, str(tmp_path / "one" / "train"), num_shards=1)
    records = read_tfrecord(str(tmp_path / "one" / "train-*.tfrecord"))
    shares = [records.shard(index, 3) for index in range(3)]
    assert all(len(share.image_source.shards) == 1 for share in shares)
    _check_shares(records, shares)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(command, count=2, cwd=ROOT, **popen):
    """`command` in `count` processes, each with the TF_CONFIG of its worker in a cluster on localhost."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(count)]}
    return [
        subprocess.Popen(command, cwd=cwd, env={
            **os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }, text=True, **popen)
        for index in range(count)
    ]


def test_two_worker_processes_give_the_loss_and_gradients_of_one_process():
    """The positive-anchor count that normalises the loss is summed over the workers, so two workers with half the
    batch each compute the loss and gradients of one process on the whole batch."""
    workers = _start_workers([sys.executable, os.path.join(ROOT, "tests", "multi_worker_check.py")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    for out, _ in outputs:
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replicas"] == 2
        assert result["distributed_loss"] == pytest.approx(result["single_loss"], rel=1e-5)
        assert result["max_gradient_relative_error"] < 1e-4


def _train_command(config, model_dir):
    return [sys.executable, os.path.join(ROOT, "bin", "train"), f"--config={config}", f"--model_dir={model_dir}",
            "--strategy=multi_worker", "--verbose=2"]


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`, which CI runs too
def test_killed_worker_and_restarted_job_resume_from_the_last_backup(shapes, tmp_path):
    """SIGKILL one of two workers mid-training (its peer is then stopped, as a job scheduler would), rerun the same
    command: both workers resume from the chief's last backup and finish the schedule."""
    from tiny import TINY_MODEL_YAML

    _, folder = shapes
    config = tmp_path / "tiny.yaml"
    # Frozen BN: batch statistics of 2 images per worker would make this tiny model diverge.
    config.write_text(TINY_MODEL_YAML.replace("batch_norm", "frozen_bn") + f"""data:
  train: {{annotations: {folder}/annotations/instances_train.json, images: {folder}/train}}
  min_size: 64
  max_size: 96
  max_boxes: 4
train:
  batch_size: 4
  iterations: 160
  learning_rate: 0.005
  lr_steps: [120]
  warmup_iterations: 2
  checkpoint_every: 8
  eval_every: 160
""")
    from keras_retinanet.training import Backups

    model_dir = tmp_path / "model"
    backups = Backups(model_dir / "backup")
    workers = _start_workers(_train_command(config, model_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # an event, not a time: no machine should need this long
    while not (backups.epochs() or [0])[0] >= 3:  # the chief's third backup
        assert all(worker.poll() is None for worker in workers), "a worker stopped before the kill"
        assert time.monotonic() < deadline, "no third backup in 300 s"
        time.sleep(0.01)
    workers[1].send_signal(signal.SIGKILL)
    workers[0].send_signal(signal.SIGKILL)
    for worker in workers:
        worker.wait(timeout=60)
    killed_at = backups.epochs()[0]
    assert 3 <= killed_at < 20 and not (model_dir / "model.keras").exists()

    workers = _start_workers(_train_command(config, model_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    # The chief logged the intervals from the backup's on, not from the first; a worker that resumed elsewhere
    # would have stopped the job (train checks that every worker resumed at the chief's epoch).
    assert sorted(logged_losses(model_dir)) == list(range(killed_at, 20))
    import keras

    import keras_retinanet.models  # noqa: F401  (registers our classes, which the saved model names, with Keras)

    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    assert int(model.optimizer.iterations.numpy()) == 160


def logged_losses(model_dir):
    """{checkpoint interval (from 0): loss} that the newest run of `train` in model_dir logged to TensorBoard."""
    import tensorflow as tf

    newest = sorted(glob.glob(os.path.join(model_dir, "logs", "train", "events.out.tfevents.*")))[-1]
    return {event.step: float(tf.make_ndarray(value.tensor)) for event in tf.compat.v1.train.summary_iterator(newest)
            for value in event.summary.value if value.tag == "epoch_loss"}


def _shrunk(data):
    return [
        "model.backbone.width_multiplier=0.25", "model.backbone.weights=null", "model.pyramid.filters=16",
        "model.heads.filters=16", "model.heads.num_convs=1", "data.train.format=coco",
        f"data.train.annotations={data}/annotations/instances_train.json", f"data.train.images={data}/train",
        'data.val.annotations=""', "data.min_size=64", "data.max_size=96", "data.max_boxes=4", "train.batch_size=2",
        "train.iterations=2", "train.lr_steps=[2]", "train.warmup_iterations=1", "train.checkpoint_every=1",
        "train.eval_every=2", "train.jit_compile=false",
    ]


def _mirrored_train(config, model_dir, overrides):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "train"), f"--config={config}", f"--model_dir={model_dir}",
         "--strategy=mirrored", "--cpu_devices=2", "--verbose=2", *(f"--set={o}" for o in overrides)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
    )


# Every shipped config (20-45 s each) in `make test-slow`, which CI runs too.
@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(p for p in os.listdir(os.path.join(ROOT, "configs")) if p.endswith(".yaml")))
def test_every_shipped_config_trains_under_mirrored_on_two_cpu_devices(shapes, tmp_path, config):
    """Each shipped config's model (narrower, on small images) trains two steps; only the data and sizes differ."""
    import keras

    import keras_retinanet.models  # noqa: F401  (registers our classes, which the saved model names, with Keras)

    from keras_retinanet.config import load_config

    _, folder = shapes
    path, overrides = os.path.join(ROOT, "configs", config), _shrunk(folder)
    if load_config(path).model.init_from:  # a fine-tuning: from a source of the same (shrunk) architecture
        source = _mirrored_train(path, tmp_path / "source", [*overrides, "model.init_from=null"])
        assert source.returncode == 0, source.stderr[-3000:]
        overrides.append(f"model.init_from={tmp_path / 'source'}")
    process = _mirrored_train(path, tmp_path / "model", overrides)
    assert process.returncode == 0, process.stderr[-3000:]
    model = keras.saving.load_model(tmp_path / "model" / "model.keras", safe_mode=True)
    assert int(model.optimizer.iterations.numpy()) == 2
    losses = logged_losses(tmp_path / "model")
    assert sorted(losses) == [0, 1] and all(np.isfinite(list(losses.values())))


def test_xla_with_replicas_on_cpu_devices_is_refused_before_training(shapes, tmp_path):
    """XLA has no collectives on CPU: the demo config (XLA on) under mirrored says what to set, in one line."""
    _, folder = shapes
    overrides = [o for o in _shrunk(folder) if not o.startswith("train.jit_compile")]
    process = _mirrored_train(os.path.join(ROOT, "configs", "demo.yaml"), tmp_path / "model", overrides)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1] == (
        "error: train.jit_compile=true cannot run with 2 replicas on CPU devices (XLA has no collectives on CPU): "
        "set train.jit_compile=false, or train on GPUs")
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("environment, message", [
    ({}, "error: --strategy=multi_worker needs the cluster: set TF_CONFIG in every worker's environment, or start "
         "the workers with srun in a Slurm job"),
    ({"TF_CONFIG": "{cluster: [node0]}"}, "error: TF_CONFIG is not JSON"),
])
def test_multi_worker_without_a_cluster_says_what_to_set(shapes, tmp_path, environment, message):
    _, folder = shapes
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CONFIG", "SLURM_PROCID")}
    process = subprocess.run(
        [*_train_command(os.path.join(ROOT, "configs", "demo.yaml"), tmp_path / "model"),
         *(f"--set={o}" for o in _shrunk(folder))],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**env, **environment, "PYTHONPATH": ROOT},
    )
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1].startswith(message)
