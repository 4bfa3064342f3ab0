"""`bin/benchmark --paths=fit_budget` (`keras_retinanet.benchmark.fit_budget`): ours and torchvision's RetinaNet
trained for the same wall-clock budget on the same data and scored by the same COCO code."""

import math

import pytest

from keras_retinanet.benchmark.fit_budget import FitBudget, _Budget, _peer_learning_rate, compare, rows
from keras_retinanet.benchmark.report import markdown
from keras_retinanet.benchmark.suite import BenchmarkOptionError, BenchmarkOptions
from keras_retinanet.config import TrainConfig

TINY_EXPERIMENT = """model:
  backbone: {depth: 18, normalization: batch_norm, frozen_stages: 0, preprocessing: torch, weights: null,
             width_multiplier: 0.25}
  pyramid: {filters: 32}
  heads: {filters: 32, num_convs: 1}
data:
  train: {annotations: DATA/annotations/instances_train.json, images: DATA/train}
  val: {annotations: DATA/annotations/instances_val.json, images: DATA/val}
  min_size: 64
  max_size: 64
  size_divisor: 64
train:
  batch_size: 2
  iterations: 100000
  learning_rate: 0.01
  lr_steps: [60000, 80000]
  warmup_iterations: 4
  checkpoint_every: 1000
  eval_every: 1000
"""


class _FixedClock(_Budget):
    def __init__(self, seconds, elapsed):
        super().__init__(seconds)
        self.fixed = elapsed

    def elapsed(self):
        return self.fixed


def test_the_peers_schedule_warms_up_then_decays_at_two_thirds_and_eight_ninths_of_the_budget():
    config = TrainConfig(learning_rate=0.1, warmup_iterations=10, warmup_factor=0.001, lr_decay=0.1)
    assert _peer_learning_rate(config, 0, _FixedClock(90, 0)) == pytest.approx(0.1 * 0.001)
    assert _peer_learning_rate(config, 5, _FixedClock(90, 1)) == pytest.approx(0.1 * (0.001 + 0.999 * 0.5))
    assert _peer_learning_rate(config, 50, _FixedClock(90, 59)) == pytest.approx(0.1)
    assert _peer_learning_rate(config, 50, _FixedClock(90, 60)) == pytest.approx(0.01)
    assert _peer_learning_rate(config, 50, _FixedClock(90, 80)) == pytest.approx(0.001)


def test_the_rows_put_each_metric_and_class_beside_the_peers_with_the_ratio():
    ours = {"AP": 0.3, "AP50": 0.6, "iterations": 200, "images_per_second": 20.0, "per_class_AP": {"a": 0.4, "b": 0.2}}
    peer = {"AP": 0.1, "AP50": 0.3, "iterations": 50, "images_per_second": 5.0, "per_class_AP": {"a": 0.2, "b": 0.0}}
    budget = FitBudget("x.yaml", minutes=2)
    lines = rows({"ours": ours, "torchvision": peer}, budget)
    assert [line["path"].split(" after")[0] for line in lines] == [
        "AP", "AP50", "AP of a", "AP of b", "training iterations", "training images/s of the same run"]
    table = markdown({"date": "2026-12-05", "command": "bin/benchmark", "gflop_per_image": 1.0,
                      "peak_gflops": {"float32": 100.0}, "setting": {"repeats": 1}, "peers": ["torchvision"],
                      "machine": {"tensorflow": "2.21.0", "cpu": "test CPU", "cores": 2, "avx512": False,
                                  "avx512_bf16": False, "amx": False, "gpus": []}, "rows": lines})
    assert "| AP after 2 min of training on x.yaml's data | 0.300 | 0.100 | - | - | 3.00 |" in table
    assert "| AP of b after 2 min of training on x.yaml's data | 0.200 | 0.000 | - | - | - |" in table
    assert "| training images/s of the same run | 20.0 images/s | 5.0 images/s | - | - | 4.00 |" in table
    failed = rows({"ours": ours, "torchvision": {"error": "ImportError: no torch"}}, budget)
    assert len(failed) == 1 and failed[0]["peers"]["torchvision"] == {"error": "ImportError: no torch"}


def test_the_path_needs_an_experiment_and_positive_minutes():
    with pytest.raises(BenchmarkOptionError, match="fit_config: the fit_budget path needs an experiment file"):
        BenchmarkOptions(paths=("fit_budget",))
    with pytest.raises(BenchmarkOptionError, match="fit_minutes: expected a positive number of minutes, got 0"):
        BenchmarkOptions(paths=("fit_budget",), fit_config="x.yaml", fit_minutes=0)


@pytest.mark.torch
def test_both_detectors_train_for_the_budget_and_are_scored_on_the_same_images(tmp_path):
    from keras_retinanet.datasets import generate_shapes_dataset

    generate_shapes_dataset(str(tmp_path / "data"), splits={"train": 8, "val": 4}, image_size=(64, 64),
                            min_size=12, max_size=30, max_objects=2)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_EXPERIMENT.replace("DATA", str(tmp_path / "data")))
    overrides = ("train.iterations=2", "train.checkpoint_every=2")
    comparison = compare(FitBudget(str(config), minutes=0.1, overrides=overrides))
    assert comparison["ours"]["iterations"] == 2  # the overrides reach ours: its schedule ends before the budget
    assert comparison["torchvision"]["iterations"] >= 1 and 6 <= comparison["torchvision"]["train_seconds"] < 30
    for side in ("ours", "torchvision"):
        figures = comparison[side]
        assert "error" not in figures, figures
        assert 0 <= figures["AP"] <= 1 and not math.isnan(figures["AP50"])
        assert set(figures["per_class_AP"]) <= {"circle", "square", "triangle", "cross"}
    assert set(comparison["ours"]["per_class_AP"]) == set(comparison["torchvision"]["per_class_AP"])
