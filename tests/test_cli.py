"""The command lines as a user runs them: train -> evaluate -> predict on a tiny shapes dataset, mirrored, errors;
and `train` resuming from its backup."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tiny import TINY_MODEL_YAML

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_CONFIG = TINY_MODEL_YAML + """  decoder: {score_threshold: 0.001}
data:
  train: {annotations: DATA/annotations/instances_train.json, images: DATA/train}
  val: {annotations: DATA/annotations/instances_val.json, images: DATA/val}
  min_size: 96
  max_size: 96
train:
  batch_size: 4
  iterations: 6
  learning_rate: 0.01
  lr_steps: [4]
  warmup_iterations: 2
  checkpoint_every: 2
  eval_every: 6
"""


def run_cli(name, *args, check=True):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", name), *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from keras_retinanet.datasets import generate_shapes_dataset

    root = tmp_path_factory.mktemp("experiment")
    data = root / "data"
    generate_shapes_dataset(str(data), splits={"train": 8, "val": 4}, image_size=(96, 96), min_size=16,
                            max_size=40, max_objects=3)
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("DATA", str(data)))
    return root, str(config)


def test_train_evaluate_predict(experiment):
    root, config = experiment
    model_dir = str(root / "model")
    result = run_cli("train", f"--config={config}", f"--model_dir={model_dir}", "--verbose=2")
    assert "iteration 6: COCO AP" in result.stdout
    for name in ("config.yaml", "model.keras", "logs"):
        assert os.path.exists(os.path.join(model_dir, name))
    with open(os.path.join(model_dir, "config.yaml")) as stream:  # data.max_boxes left out: at most 3 boxes -> 8
        assert "\n  max_boxes: 8\n" in stream.read()

    out = str(root / "eval")
    result = run_cli("evaluate", f"--model_dir={model_dir}", f"--output_dir={out}")
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in result.stdout and "class" in result.stdout
    with open(os.path.join(out, "metrics.json")) as stream:
        metrics = json.load(stream)
    # The same numbers as pycocotools run directly on the written detections.
    ground_truth = COCO(str(root / "data" / "annotations" / "instances_val.json"))
    with open(os.path.join(out, "detections.json")) as stream:
        detections = json.load(stream)
    direct = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
    direct.evaluate(), direct.accumulate(), direct.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    np.testing.assert_allclose([metrics[n] for n in names], direct.stats, atol=1e-12)
    # The analysis beside them: the figures, the error breakdown (C50 is the AP50 of each class) and the confusion
    # of the detections drawn (score >= 0.5, the default).
    for name in ("pr_curves.png", "error_breakdown.png", "confusion_matrix.png"):
        assert Image.open(os.path.join(out, name)).size[0] > 400
    with open(os.path.join(out, "error_breakdown.json")) as stream:
        breakdown = json.load(stream)
    per_class_ap50 = direct.eval["precision"][0, :, :, 0, -1]
    for k, category_id in enumerate(direct.params.catIds):
        name = ground_truth.cats[category_id]["name"]
        if name in breakdown:
            assert breakdown[name]["C50"] == pytest.approx(max(0.0, per_class_ap50[:, k].mean()), abs=1e-9)
    with open(os.path.join(out, "confusion_matrix.json")) as stream:
        confusion = json.load(stream)
    drawn = sum(d["score"] >= 0.5 for d in detections)
    assert confusion["score_threshold"] == 0.5
    assert sum(sum(row[:-1]) for row in confusion["counts"]) == drawn  # every drawn detection counted once
    assert "gallery_missed.png" in os.listdir(out) or drawn >= len(ground_truth.anns)
    faster = str(root / "eval_faster")
    run_cli("evaluate", f"--model_dir={model_dir}", f"--output_dir={faster}", "--evaluator=faster_coco_eval",
            "--noanalysis")
    with open(os.path.join(faster, "metrics.json")) as stream:
        faster_metrics = json.load(stream)
    np.testing.assert_allclose([faster_metrics[n] for n in names], [metrics[n] for n in names], rtol=0, atol=1e-12)
    assert sorted(os.listdir(faster)) == ["detections.json", "metrics.json"]

    pictures = str(root / "pictures")
    result = run_cli("predict", f"--model={model_dir}", f"--output_dir={pictures}", str(root / "data" / "val"))
    written = sorted(os.listdir(pictures))
    assert written == ["detections.json"] + [f"val_{i:06d}.png" for i in range(4)]
    with open(os.path.join(pictures, "detections.json")) as stream:
        results = json.load(stream)
    assert {r["file_name"] for r in results} <= {str(root / "data" / "val" / f"val_{i:06d}.png") for i in range(4)}
    assert all(r["category_id"] in (1, 2, 3, 4) for r in results)
    for i in range(4):  # pictures show the detections scoring >= 0.5 (the default), and the log says so
        path = str(root / "data" / "val" / f"val_{i:06d}.png")
        scores = [r["score"] for r in results if r["file_name"] == path]
        assert f"{path}: {sum(s >= 0.5 for s in scores)} of {len(scores)} detections drawn (score >= 0.5)" \
            in result.stdout


def test_bad_config_key_is_named(experiment):
    root, config = experiment
    result = run_cli("train", f"--config={config}", f"--model_dir={root / 'bad'}", "--set=train.batchsize=2",
                     check=False)
    assert result.returncode != 0 and "unknown key 'train.batchsize'" in result.stderr


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_a_stopped_run_resumes_from_its_backup(experiment):
    """A run that stopped after its iteration-4 backup (here: one that ended there) resumes from that backup when
    run again with the longer schedule: it runs checkpoint intervals 3-6 only, and ends at iteration 12."""
    from keras_retinanet.config import load_config
    from keras_retinanet.training import train

    root, config_path = experiment
    model_dir = str(root / "resumed")
    stopped = train(load_config(config_path, ["train.iterations=4", "train.eval_every=4"]), model_dir, verbose=0)
    assert stopped.history.epoch == [0, 1]
    resumed = train(load_config(config_path, ["train.iterations=12", "train.eval_every=12"]), model_dir, verbose=0)
    assert resumed.history.epoch == [2, 3, 4, 5]
    assert int(resumed.optimizer.iterations.numpy()) == 12


def epoch_losses(model_dir):
    """The `loss` of each checkpoint interval, as TensorBoard logged it."""
    losses = []
    for path in sorted(glob.glob(os.path.join(model_dir, "logs", "train", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            losses += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value if v.tag == "epoch_loss"]
    return losses


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_mirrored_on_two_cpu_devices_matches_one_device(experiment):
    """Frozen BN (the paper's) makes the forward pass independent of how the batch is split. One device in this
    process; two logical CPU devices need a process of their own (they must be set before TensorFlow starts)."""
    from keras_retinanet.config import load_config
    from keras_retinanet.training import train

    root, config = experiment
    overrides = ["train.iterations=1", "model.backbone.normalization=frozen_bn", "train.checkpoint_every=1",
                 "train.eval_every=1"]
    train(load_config(config, overrides), str(root / "default"), verbose=0)
    run_cli("train", f"--config={config}", f"--model_dir={root / 'mirrored'}", "--verbose=0", "--strategy=mirrored",
            "--cpu_devices=2", *(f"--set={override}" for override in overrides))
    (one_device,), (mirrored,) = epoch_losses(str(root / "default")), epoch_losses(str(root / "mirrored"))
    assert one_device == pytest.approx(mirrored, rel=1e-3)


def test_a_non_finite_loss_stops_training_with_one_line(experiment):
    """A learning rate that blows the weights up: one line naming the iteration and the loss term, no traceback,
    no model.keras of the broken weights."""
    root, config = experiment
    model_dir = root / "diverged"
    result = run_cli("train", f"--config={config}", f"--model_dir={model_dir}", "--verbose=0",
                     "--set=train.learning_rate=10000000000.0", "--set=train.iterations=60",
                     "--set=train.eval_every=60",
                     check=False)
    assert result.returncode == 1, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: iteration [1-9]\d*: (classification|box|regularization) loss (nan|inf|-inf)"
                        r"( and .*)?: training stopped .*", last_line), last_line
    assert not os.path.exists(model_dir / "model.keras")
    # The backups written before the loss went non-finite stay, and hold finite weights.
    from keras_retinanet.config import load_config
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.models import build_retinanet
    from keras_retinanet.optimizers import make_optimizer
    from keras_retinanet.training import Backups

    backups = Backups(model_dir / "backup")
    if backups.epochs():
        experiment_config = load_config(config)
        classes = read_split(experiment_config.data.train, experiment_config.data).num_classes
        model = build_retinanet(experiment_config.model, classes)
        model.compile(optimizer=make_optimizer(experiment_config.train))
        model.optimizer.build(model.trainable_variables)
        backups.restore(model)
        assert all(np.all(np.isfinite(weight.numpy())) for weight in model.weights)


def test_model_files_that_cannot_be_loaded_are_one_line_errors(tmp_path):
    """A .keras file with Python code (a Lambda layer) is refused by safe loading, and a file that is no model at
    all is named, in one line, by every program that loads models."""
    import keras

    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "lambda.keras")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip file")
    cases = [("lambda.keras", "it holds a Lambda layer with Python code, which safe loading does not run"),
             ("garbage.keras", "cannot be loaded (ValueError: File not found")]
    for name, cause in cases:
        path = tmp_path / name
        result = run_cli("export", f"--model={path}", f"--output={tmp_path / 'out'}", check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        last_line = result.stderr.strip().splitlines()[-1]
        assert last_line.startswith(f"error: {path}: cannot be loaded (") and cause in last_line, last_line
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "image.png")
    result = run_cli("predict", f"--model={tmp_path / 'missing.keras'}", f"--output_dir={tmp_path}",
                     str(tmp_path / "image.png"), check=False)
    assert result.stderr.strip().splitlines()[-1] == f"error: no trained model at {tmp_path / 'missing.keras'}"
