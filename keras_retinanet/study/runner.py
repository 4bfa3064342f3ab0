"""Runs a study: each dataset generated once, then each variant trained (a variant's source first), evaluated and
measured, its result kept in `work_dir/variants/<name>/result.json`. A rerun skips the finished variants, resumes a
half-trained one from its backup, and adds to a finished one's result what the study now asks of it and it lacks
(an evaluation at another size or score threshold, OHEM's NMS count) from its saved model, without training.

The study writes its JSON files (results, curves, the dataset's record) atomically, so one that does not read back
as what the study wrote (truncated, not JSON, not an object, lacking keys) was damaged from outside: the study stops
with one line naming it rather than guess, and never overwrites it; deleting it computes it anew (a variant then
resumes from its backups, which costs no training where it had finished)."""

import dataclasses
import functools
import json
import math
import os
import statistics
import time
from typing import Optional

import keras
import numpy as np

from keras_retinanet.config import ConfigError, ExperimentConfig, cut, flattened, from_dict, load_config, to_dict
from keras_retinanet.data import read_coco
from keras_retinanet.datasets import generate_shapes_dataset
from keras_retinanet.evaluation import evaluate_model
from keras_retinanet.inference import MODEL_FILE, load_trained_model
from keras_retinanet.study import analysis
from keras_retinanet.study.spec import DEFAULT_DATASET, evaluation_key
from keras_retinanet.training import CONFIG_FILE, NonFiniteLossError, train

RESULT_FILE = "result.json"
CURVE_FILE = "curve.json"
DATASET_FILE = "dataset.json"
QUANTILES = 1001  # points kept of each Figure 4 curve
OHEM_BATCHES = 4  # training batches over which the anchors OHEM's NMS drops are counted
LOSS_KEYS = ("classification_loss", "box_loss")
# What training logs with train.log_gradient_norms: norms before clipping, and whether the step was clipped.
GRADIENT_NORM_KEYS = ("gradient_norm", "classification_gradient_norm", "box_gradient_norm")
GRADIENT_KEYS = (*GRADIENT_NORM_KEYS, "clipped")


@dataclasses.dataclass
class StudyResults:
    """What a report needs: the variants' results, each dataset's anchors ({name: {"positive", "negative",
    "ignored", "classes"}}), Figure 4's curves, the wall time."""

    variants: dict
    balance: dict
    figure_4: dict
    curves: dict
    seconds: float


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """An evaluation a variant's result holds (under `evaluation_key`): at `size` px, with the decoder's
    `score_threshold` (None: the variant's own), timed or not."""

    size: int
    score_threshold: Optional[float] = None
    timed: bool = False


class _Data:
    """A generated dataset: its `folder` and annotation files ({split: path}); its splits read when first asked."""

    def __init__(self, folder, annotations):
        self.folder, self.annotations = folder, annotations

    @functools.cached_property
    def train(self):
        return read_coco(self.annotations["train"], os.path.join(self.folder, "train"))

    @functools.cached_property
    def val(self):
        return read_coco(self.annotations["val"], os.path.join(self.folder, "val"))

    @functools.cached_property
    def classes(self):
        with open(self.annotations["train"], encoding="utf-8") as file:
            return len(json.load(file)["categories"])


def dataset_folder(work_dir, name):
    """Where dataset `name` is generated: the default one in work_dir/data (where a study of one dataset keeps it),
    the others in work_dir/data/<name>."""
    return os.path.join(work_dir, "data", *(() if name == DEFAULT_DATASET else (name,)))


def model_file(work_dir, variant):
    """The trained model of `variant`, as an absolute path: what `model.init_from=variant:<name>` becomes, the
    same however --work_dir was written."""
    return os.path.abspath(os.path.join(work_dir, "variants", variant, MODEL_FILE))


def run_study(study, work_dir, log=print):
    """Runs (or resumes) `study` (a `Study`) in `work_dir`; returns its `StudyResults`."""
    start = time.monotonic()
    datasets = {}
    for name, parameters in study.datasets.items():
        folder = dataset_folder(work_dir, name)
        datasets[name] = _Data(folder, _dataset(parameters, folder, log))
    base = study.config()
    balance = {}
    for name, dataset in datasets.items():
        path = os.path.join(work_dir, "balance.json" if name == DEFAULT_DATASET else f"balance_{name}.json")
        balance[name] = {**_cached(path, lambda: analysis.anchor_balance(dataset.train, base)),
                         "classes": dataset.classes}
    wanted = _evaluations_wanted(study, base.data.min_size)
    results = {}
    for number, name in enumerate(study.variants, 1):
        progress = f"[{number}/{len(study.variants)}] {name}"
        results[name] = _variant_result(study, name, work_dir, datasets[study.dataset_of(name)], wanted[name],
                                        results, log=lambda text: log(f"{progress}: {text}"))
        log(f"{progress}: {_summary(results[name])}")
    figure_4 = {}
    if study.figure_4 and not results[study.figure_4["variant"]]["diverged"]:
        variant = study.figure_4["variant"]
        figure_4 = _cached(os.path.join(work_dir, "figure_4.json"), lambda: _figure_4_curves(
            study.figure_4, os.path.join(work_dir, "variants", variant), datasets[study.dataset_of(variant)].train,
            base))
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


def _variant_config(study, name, dataset, work_dir):
    """The config of variant `name` on its generated `dataset` (a `_Data`), a `variant:` source resolved to that
    variant's model file."""
    paths = [f"data.train.annotations={dataset.annotations['train']}",
             f"data.train.images={os.path.abspath(os.path.join(dataset.folder, 'train'))}"]
    source = study.sources.get(name)
    return study.config(name, paths, [f"model.init_from={model_file(work_dir, source)}"] if source else ())


def _evaluations_wanted(study, training_size):
    """{variant: {evaluation key: `Evaluation`}}: every variant at the training size; each table row's evaluation
    for its variant and the variant's repeats (timed for the variant itself where the table is timed)."""
    wanted = {name: {evaluation_key(training_size): Evaluation(training_size)} for name in study.variants}
    for table in study.tables:
        for row in table.rows:
            size = row.eval_size or training_size
            key = evaluation_key(size, row.score_threshold)
            for member in study.repeat_groups.get(row.variant, [row.variant]):
                timed = table.timed and member == row.variant or wanted[member].get(key, Evaluation(size)).timed
                wanted[member][key] = Evaluation(size, row.score_threshold, timed)
    return wanted


def _variant_result(study, name, work_dir, dataset, wanted, results, log):
    """The result of variant `name`: read back, or trained now (resuming); then completed with what the study now
    wants of it and it lacks (`_measure`). `results` holds the variants trained before it, its source among them."""
    variant_dir = os.path.join(work_dir, "variants", name)
    config = _variant_config(study, name, dataset, work_dir)
    source = study.sources.get(name)
    if source is not None and results[source]["diverged"]:
        return {"variant": name, "config": to_dict(config), "diverged": f"not trained: variant {source}, whose model "
                "it starts from, diverged", "diverged_at": None, "evaluations": {}}
    path = os.path.join(variant_dir, RESULT_FILE)
    model = None
    if os.path.exists(path):
        result = _read_json(path)
        _check_result(result, config, variant_dir)
    else:
        result, model = _train_variant(name, config, variant_dir, log)
        os.makedirs(variant_dir, exist_ok=True)
        _write_json(path, result)
    if not result["diverged"] and _measure(result, config, variant_dir, dataset, wanted, model, log):
        _write_json(path, result)
    return result


def _train_variant(name, config, variant_dir, log):
    """Trains one variant (resuming): its result, without evaluations, and the trained model (None if it
    diverged)."""
    previous = os.path.join(variant_dir, CONFIG_FILE)
    if os.path.exists(previous) and load_config(previous) != config:
        raise ConfigError(f"{variant_dir} holds a half-trained run of another config than the study now gives this "
                          "variant: delete that folder to rerun it, or give another --work_dir")
    keras.backend.clear_session()
    curve = LossCurve(os.path.join(variant_dir, CURVE_FILE))
    result = {"variant": name, "config": to_dict(config), "diverged": None, "evaluations": {}}
    log(f"training {config.train.iterations} iterations in {variant_dir}")
    model = None
    try:
        # Every setting given: a model.init_from source gives the variant its weights, none of its settings.
        model = train(config, variant_dir, verbose=0, callbacks=[curve], given=frozenset(flattened(to_dict(config))))
    except NonFiniteLossError as error:
        curve.save()
        result.update(diverged=str(error), diverged_at=curve.record["iteration"][-1])
    result["train_seconds"] = curve.record["seconds"]
    norms = gradient_norm_summary(curve.record)
    if norms is not None:
        result["gradient_norms"] = norms
    return result, model


def _measure(result, config, variant_dir, dataset, wanted, model, log):
    """Adds to a trained variant's `result` what it lacks of the evaluations `wanted` ({key: `Evaluation`}) and,
    for OHEM, the anchors its NMS drops; measured on `model`, or on the model file of a variant trained by an
    earlier run. Returns whether anything was added."""
    models = {}

    def model_at(threshold):
        """The variant's model with the decoder at `threshold` (None: its own): one model object per threshold,
        since the detection path traced for a model (`inference.detect`) keeps the threshold it was traced with."""
        if threshold not in models:
            if threshold is None and model is not None:
                models[None] = model
            else:
                models[threshold] = load_trained_model(os.path.join(variant_dir, MODEL_FILE))
                if threshold is not None:
                    models[threshold].decoder.score_threshold = threshold
        return models[threshold]

    added = False
    for key, evaluation in sorted(wanted.items(), key=lambda item: (item[1].size, item[1].score_threshold or -1.0)):
        metrics = result["evaluations"].get(key)
        if metrics is not None and (not evaluation.timed or "seconds_per_image" in metrics):
            continue
        detector = model_at(evaluation.score_threshold)
        if metrics is None:
            threshold = evaluation.score_threshold
            log(f"evaluating at {evaluation.size} px{'' if threshold is None else f', score threshold {threshold:g}'}")
            data = dataclasses.replace(config.data, min_size=evaluation.size, max_size=evaluation.size)
            coco, _ = evaluate_model(detector, dataset.val, data, config.train.batch_size,
                                     ground_truth=dataset.annotations["val"])
            metrics = {name: float(coco.metrics[name]) for name in ("AP", "AP50", "AP75")}
        if evaluation.timed:
            metrics["seconds_per_image"] = analysis.seconds_per_image(detector, evaluation.size)
        result["evaluations"][key] = metrics
        added = True
    if config.model.classification_loss.type == "ohem" and "ohem_nms" not in result:
        log(f"counting the anchors OHEM's NMS drops over {OHEM_BATCHES} training batches")
        result["ohem_nms"] = {**analysis.ohem_nms_drops(model_at(None), dataset.train, config.data, OHEM_BATCHES,
                                                        config.train.batch_size),
                              "largest_anchor_iou": analysis.largest_anchor_iou(config)}
        added = True
    return added


def gradient_norm_summary(record):
    """{"median": {key: median over the steps}, "clipped_steps", "steps"} of the gradient norms in a `LossCurve`
    record (`GRADIENT_NORM_KEYS`; clipped_steps None where nothing was clipped or counted), or None without them."""
    if "gradient_norm" not in record:
        return None
    medians = {}
    for key in GRADIENT_NORM_KEYS:
        values = [value for value in record.get(key, ()) if value is not None]
        medians[key] = statistics.median(values) if values else None
    clipped = record.get("clipped")
    return {"median": medians, "clipped_steps": None if clipped is None else
            int(round(sum(value for value in clipped if value is not None))), "steps": len(record["gradient_norm"])}


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
    scores = []
    for key, metrics in result["evaluations"].items():
        size, _, threshold = key.partition("@")
        scores.append(f"AP {metrics['AP']:.3f} at {size} px{f' (score threshold {threshold})' if threshold else ''}")
    return f"{', '.join(scores)}; trained in {minutes:.1f} min"


def _figure_4_curves(settings, variant_dir, dataset, base):
    """{gamma: {"positive": quantiles, "negative": quantiles, "count": [positives, negatives]}} of the cumulative
    normalised loss (Figure 4) of the variant's model on its training split, `dataset`."""
    model = load_trained_model(os.path.join(variant_dir, MODEL_FILE))
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
    """The classification and box loss of every iteration, and its gradient norms and whether it was clipped
    (`GRADIENT_KEYS`, where training logs them: train.log_gradient_norms), each recovered from Keras' running means
    over each epoch, and the training wall time, written to `path` at every epoch end; a resumed run continues the
    file."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.record = {"iteration": [], "classification_loss": [], "box_loss": [], "seconds": 0.0}

    def on_train_begin(self, logs=None):
        if os.path.exists(self.path):
            self.record = _read_json(self.path)
        done = int(self.model.optimizer.iterations.numpy())
        kept = sum(1 for iteration in self.record["iteration"] if iteration <= done)
        for key in ("iteration", *LOSS_KEYS, *GRADIENT_KEYS):
            del self.record.get(key, [])[kept:]
        self._clock = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._means = {}

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.record["iteration"].append(int(self.model.optimizer.iterations.numpy()))
        for key in (*LOSS_KEYS, *(key for key in GRADIENT_KEYS if key in logs)):
            mean = float(logs.get(key, math.nan))
            value = (batch + 1) * mean - batch * self._means.get(key, 0.0)  # this step's value from the running means
            self._means[key] = mean
            self.record.setdefault(key, []).append(value if math.isfinite(value) else None)

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def save(self):
        now = time.monotonic()
        self.record["seconds"] += now - self._clock
        self._clock = now
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        _write_json(self.path, self.record)


def _cached(path, compute):
    """The JSON at `path`, or `compute()` written there atomically."""
    if os.path.exists(path):
        return _read_json(path)
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
