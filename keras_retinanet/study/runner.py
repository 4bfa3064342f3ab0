"""Runs a study: the dataset generated once, then each variant trained, evaluated and measured, its result kept in
`work_dir/variants/<name>/result.json`. A rerun skips the finished variants and resumes a half-trained one from
its backup.

The study writes its JSON files (results, curves, the dataset's record) atomically, so one that does not read back
as what the study wrote (truncated, not JSON, not an object, lacking keys) was damaged from outside: the study stops
with one line naming it rather than guess, and never overwrites it; deleting it computes it anew (a variant then
resumes from its backups, which costs no training where it had finished)."""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

from keras_retinanet.config import ConfigError, ExperimentConfig, cut, from_dict, load_config, to_dict
from keras_retinanet.data import read_coco
from keras_retinanet.datasets import generate_shapes_dataset
from keras_retinanet.evaluation import evaluate_model
from keras_retinanet.inference import MODEL_FILE, load_trained_model
from keras_retinanet.study import analysis
from keras_retinanet.training import CONFIG_FILE, NonFiniteLossError, train

RESULT_FILE = "result.json"
CURVE_FILE = "curve.json"
DATASET_FILE = "dataset.json"
QUANTILES = 1001  # points kept of each Figure 4 curve


@dataclasses.dataclass
class StudyResults:
    """What a report needs: the variants' results, the anchors' balance, Figure 4's curves, the wall time."""

    variants: dict
    balance: dict
    figure_4: dict
    curves: dict
    seconds: float


def run_study(study, work_dir, log=print):
    """Runs (or resumes) `study` (a `Study`) in `work_dir`; returns its `StudyResults`."""
    start = time.monotonic()
    annotations = _dataset(study.dataset, os.path.join(work_dir, "data"), log)
    base = _variant_config(study, None, annotations)
    balance = _cached(os.path.join(work_dir, "balance.json"), lambda: analysis.anchor_balance(
        read_coco(annotations["train"], os.path.join(work_dir, "data", "train")), base))
    val_set = read_coco(annotations["val"], os.path.join(work_dir, "data", "val"))
    eval_sizes, timed = _evaluations_wanted(study, base.data.min_size)
    results = {}
    for number, name in enumerate(study.variants, 1):
        variant_dir = os.path.join(work_dir, "variants", name)
        config = _variant_config(study, name, annotations)
        results[name] = _cached(os.path.join(variant_dir, RESULT_FILE), lambda: _run_variant(
            name, config, variant_dir, val_set, annotations["val"], eval_sizes[name], timed[name],
            log=lambda text: log(f"[{number}/{len(study.variants)}] {name}: {text}")),
            check=lambda result: _check_result(result, config, variant_dir))
        log(f"[{number}/{len(study.variants)}] {name}: {_summary(results[name])}")
    figure_4 = {}
    if study.figure_4 and not results[study.figure_4["variant"]]["diverged"]:
        figure_4 = _cached(os.path.join(work_dir, "figure_4.json"), lambda: _figure_4_curves(
            study.figure_4, os.path.join(work_dir, "variants", study.figure_4["variant"]), annotations, work_dir, base))
    curves = {name: _read_json(os.path.join(work_dir, "variants", name, CURVE_FILE)) for name in study.curves}
    return StudyResults(results, balance, figure_4, curves, time.monotonic() - start)


def _dataset(parameters, data_dir, log):
    """The generated dataset's annotation files ({split: path}), made once per `data_dir`."""
    parameters = dict(parameters)
    if "train_images" not in parameters or "val_images" not in parameters:
        raise ConfigError(f"the study's dataset settings {parameters} need train_images and val_images")
    splits = {"train": parameters.pop("train_images"), "val": parameters.pop("val_images")}
    if isinstance(parameters.get("image_size"), int):  # square images
        parameters["image_size"] = (parameters["image_size"],) * 2
    recorded = {"splits": splits, **parameters}
    if "image_size" in parameters:
        recorded["image_size"] = list(parameters["image_size"])
    record_path = os.path.join(data_dir, DATASET_FILE)
    if os.path.exists(record_path):
        if _read_json(record_path) != recorded:
            raise ConfigError(f"{data_dir} holds a dataset generated with {_read_json(record_path)}, not the "
                              f"study's {recorded}: give another --work_dir")
    else:
        log(f"generating the dataset in {data_dir}: {recorded}")
        try:
            generate_shapes_dataset(data_dir, splits=splits, **parameters)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the study's dataset settings {recorded}: {error}") from None
        _write_json(record_path, recorded)
    # Absolute: a variant's config (compared on resumption) does not depend on how --work_dir was spelt.
    return {split: os.path.abspath(os.path.join(data_dir, "annotations", f"instances_{split}.json"))
            for split in splits}


def _variant_config(study, name, annotations):
    """The config of variant `name` (None: the study's experiment) on the generated data."""
    data_dir = os.path.dirname(os.path.dirname(annotations["train"]))
    paths = [f"data.train.annotations={annotations['train']}", f"data.train.images={os.path.join(data_dir, 'train')}"]
    return study.config(name, paths)


def _evaluations_wanted(study, training_size):
    """{variant: sizes it is evaluated at}, {variant: sizes it is timed at}."""
    sizes = {name: {training_size} for name in study.variants}
    timed = {name: set() for name in study.variants}
    for table in study.tables:
        for row in table.rows:
            size = row.eval_size or training_size
            sizes[row.variant].add(size)
            if table.timed:
                timed[row.variant].add(size)
    return sizes, timed


def _run_variant(name, config, variant_dir, val_set, val_annotations, eval_sizes, timed_sizes, log):
    """Trains one variant (resuming), then evaluates it at each size: its result (a dict)."""
    previous = os.path.join(variant_dir, CONFIG_FILE)
    if os.path.exists(previous) and load_config(previous) != config:
        raise ConfigError(f"{variant_dir} holds a half-trained run of another config than the study now gives this "
                          "variant: delete that folder to rerun it, or give another --work_dir")
    keras.backend.clear_session()
    curve = LossCurve(os.path.join(variant_dir, CURVE_FILE))
    result = {"variant": name, "config": to_dict(config), "diverged": None, "evaluations": {}}
    log(f"training {config.train.iterations} iterations in {variant_dir}")
    try:
        model = train(config, variant_dir, verbose=0, callbacks=[curve])
    except NonFiniteLossError as error:
        curve.save()
        result.update(diverged=str(error), diverged_at=curve.record["iteration"][-1],
                      train_seconds=curve.record["seconds"])
        return result
    result["train_seconds"] = curve.record["seconds"]
    for size in sorted(eval_sizes):
        data = dataclasses.replace(config.data, min_size=size, max_size=size)
        evaluation, _ = evaluate_model(model, val_set, data, config.train.batch_size, ground_truth=val_annotations)
        metrics = {key: float(evaluation.metrics[key]) for key in ("AP", "AP50", "AP75")}
        if size in timed_sizes:
            metrics["seconds_per_image"] = analysis.seconds_per_image(model, size)
        result["evaluations"][str(size)] = metrics
    return result


def _check_result(result, config, variant_dir):
    """A finished variant's result stands if it holds what the study writes and its config is the one the study gives
    it now (settings added to the library since take their defaults)."""
    path = os.path.join(variant_dir, RESULT_FILE)
    missing = sorted({"config", "diverged", "evaluations"} - set(result))
    if missing or not isinstance(result["evaluations"], dict):
        raise ConfigError(f"{path}: not a result the study wrote (it lacks {', '.join(missing) or 'evaluations'}): "
                          "delete it to evaluate the variant anew")
    if from_dict(ExperimentConfig, result["config"], source=path) != config:
        raise ConfigError(f"{variant_dir} holds a result of another config than the study now gives this variant: "
                          "delete that folder to rerun it, or give another --work_dir")


def _summary(result):
    minutes = result.get("train_seconds", 0.0) / 60
    if result["diverged"]:
        return f"diverged after {minutes:.1f} min ({result['diverged']})"
    scores = ", ".join(f"AP {m['AP']:.3f} at {size} px" for size, m in result["evaluations"].items())
    return f"{scores}; trained in {minutes:.1f} min"


def _figure_4_curves(settings, variant_dir, annotations, work_dir, base):
    """{gamma: {"positive": quantiles, "negative": quantiles, "count": [positives, negatives]}} of the cumulative
    normalised loss (Figure 4) of the variant's model on the training split."""
    model = load_trained_model(os.path.join(variant_dir, MODEL_FILE))
    dataset = read_coco(annotations["train"], os.path.join(work_dir, "data", "train"))
    distributions = analysis.loss_distribution(model, dataset, base.data, [float(g) for g in settings["gammas"]],
                                               int(settings.get("images", len(dataset.records))))
    fractions = np.linspace(0.0, 1.0, QUANTILES)
    curves = {}
    for gamma, (positive, negative) in distributions.items():
        curves[str(gamma)] = {
            side: np.cumsum(losses)[np.minimum((fractions * (len(losses) - 1)).round().astype(int), len(losses) - 1)]
            .tolist() for side, losses in (("positive", positive), ("negative", negative))
        }
        curves[str(gamma)]["count"] = [len(positive), len(negative)]
    return curves


class LossCurve(keras.callbacks.Callback):
    """The classification and box loss of every iteration (recovered from Keras' running means over each epoch) and
    the training wall time, written to `path` at every epoch end; a resumed run continues the file."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.record = {"iteration": [], "classification_loss": [], "box_loss": [], "seconds": 0.0}

    def on_train_begin(self, logs=None):
        if os.path.exists(self.path):
            self.record = _read_json(self.path)
        done = int(self.model.optimizer.iterations.numpy())
        kept = sum(1 for iteration in self.record["iteration"] if iteration <= done)
        for key in ("iteration", "classification_loss", "box_loss"):
            del self.record[key][kept:]
        self._clock = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._means = {}

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.record["iteration"].append(int(self.model.optimizer.iterations.numpy()))
        for key in ("classification_loss", "box_loss"):
            mean = float(logs.get(key, math.nan))
            value = (batch + 1) * mean - batch * self._means.get(key, 0.0)  # this step's loss from the running means
            self._means[key] = mean
            self.record[key].append(value if math.isfinite(value) else None)

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def save(self):
        now = time.monotonic()
        self.record["seconds"] += now - self._clock
        self._clock = now
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        _write_json(self.path, self.record)


def _cached(path, compute, check=None):
    """The JSON at `path` (passed to `check`), or `compute()` written there atomically."""
    if os.path.exists(path):
        value = _read_json(path)
        if check is not None:
            check(value)
        return value
    value = compute()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_json(path, value)
    return value


def _read_json(path):
    """The JSON object the study wrote to `path`; a ConfigError naming the file where it is no such thing."""
    try:
        with open(path, encoding="utf-8") as file:
            value = json.load(file)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{path}: not the JSON the study wrote ({cut(str(error), 80)}): delete it to compute it "
                          "anew") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: not the JSON object the study wrote: delete it to compute it anew")
    return value


def _write_json(path, value):
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=1)
    os.replace(temporary, path)
