"""Training and evaluation of a RetinaNet experiment: what `bin/train` and `bin/evaluate` run."""

import dataclasses
import math
import os
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_retinanet.config import ExperimentConfig, dump_config, from_dict, to_dict
from keras_retinanet.data import read_dataset
from keras_retinanet.data.coco import to_coco_ground_truth
from keras_retinanet.data.pipeline import inference_dataset, load_images, to_original_coordinates, training_dataset
from keras_retinanet.data.validation import DataError, DataPolicy
from keras_retinanet.evaluation import detections_to_coco_results, evaluate_coco
from keras_retinanet.models import build_retinanet
from keras_retinanet.visualization import draw_batch_detections

STRATEGIES = ("default", "one_device", "mirrored")
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"


@keras.saving.register_keras_serializable(package="keras_retinanet")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `base * warmup_factor` to `base` over `warmup_steps`, then x `decay` at each of `steps`."""

    def __init__(self, base, steps, decay=0.1, warmup_steps=500, warmup_factor=1.0 / 3):
        self.base = float(base)
        self.steps = tuple(int(s) for s in steps)
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decays = tf.add_n([tf.cast(step >= s, tf.float32) for s in self.steps]) if self.steps else 0.0
        rate = self.base * self.decay**decays
        if self.warmup_steps > 0:
            progress = tf.minimum(step / self.warmup_steps, 1.0)
            rate *= self.warmup_factor + (1.0 - self.warmup_factor) * progress
        return rate

    def get_config(self):
        return {
            "base": self.base,
            "steps": self.steps,
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
        }


def read_split(split, data_config):
    """The `DetectionDataset` of a `SplitConfig`, read with the bad-input policy of `data_config`; prints what the
    policy skipped or changed."""
    dataset = read_dataset(split.format, split.annotations, split.images, split.classes, DataPolicy.of(data_config))
    summary = dataset.report.summary()
    boxes = sum(len(record.boxes) for record in dataset.records)
    ignored = sum(len(record.ignore_boxes) for record in dataset.records)
    print(f"{dataset.source}: {len(dataset.records)} images, {boxes} boxes, {ignored} ignore regions, "
          f"{dataset.num_classes} classes" + (f"\n{summary}" if summary else ""))
    return dataset


def official_ground_truth(split):
    """The instances JSON of a COCO-format split (COCO metrics use its areas), else None (records are the truth)."""
    return split.annotations if split.format == "coco" else None


def make_strategy(name):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"unknown strategy {name!r}: use one of {STRATEGIES}")


def make_optimizer(train_config):
    """SGD with momentum, weight decay and the warm-up + step schedule of `train_config`."""
    schedule = WarmupStepDecay(
        train_config.learning_rate,
        train_config.lr_steps,
        train_config.lr_decay,
        train_config.warmup_iterations,
        train_config.warmup_factor,
    )
    return keras.optimizers.SGD(
        schedule,
        momentum=train_config.momentum,
        weight_decay=train_config.weight_decay,
        global_clipnorm=train_config.clip_norm,
    )


_predict_functions = weakref.WeakKeyDictionary()  # model -> its compiled predict step, reused across calls


def detect(model, images, data_config, batch_size):
    """Runs `model` over `images` (image file paths or a `DetectionDataset`), prepared per `data_config`:
    detections (numpy) in pixels of the upright original images, in order."""
    predict = _predict_functions.get(model)
    if predict is None:
        # The model's own predict_step, outside any distribution strategy it was trained under: under
        # MirroredStrategy, Keras' predict_on_batch returns every replica's copy of the batch.
        predict = _predict_functions[model] = tf.function(model.predict_step, reduce_retracing=True)
    batches = []
    for batch, info in inference_dataset(images, data_config, batch_size):
        # Boxes are clipped to each image inside its padding before NMS (as torchvision and detectron2 do).
        inputs = {"images": batch, "image_sizes": info["image_size"]}
        detections = {key: value.numpy() for key, value in predict(inputs).items()}
        detections["boxes"] = to_original_coordinates(
            detections["boxes"], info["scale"].numpy(), info["original_size"].numpy()
        )
        batches.append(detections)
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]} if batches else {}


def evaluate_model(model, dataset, data_config, batch_size, ground_truth=None):
    """COCO evaluation of `model` on `dataset`: (evaluation, results).

    The ground truth is `dataset`'s own records in COCO form (VOC `difficult` objects and COCO crowds as crowd
    regions), or `ground_truth` (a COCO instances JSON, e.g. the official one with its mask areas) restricted to
    the images of `dataset`. Every class of `dataset` must be a class of the model, with the same category id and
    name; detections of model classes the dataset lacks (e.g. torchvision's background and unused COCO ids) are
    left out.
    """
    image_ids = [record.image_id for record in dataset.records]
    detections = detect(model, dataset, data_config, batch_size)
    known = set(dataset.category_ids)
    results = detections_to_coco_results(image_ids, detections, _result_category_ids(model, dataset))
    results = [result for result in results if result["category_id"] in known]
    if ground_truth is None:
        ground_truth = to_coco_ground_truth(dataset)
    return evaluate_coco(ground_truth, results, image_ids=image_ids), results


def _result_category_ids(model, dataset):
    """The category id of each of `model`'s labels: from the label map stored with the model, checked against
    `dataset`'s; a model without one is taken to have `dataset`'s classes."""
    metadata = model.metadata or {}
    if "category_ids" not in metadata:
        return dataset.category_ids
    model_classes = dict(zip(metadata["category_ids"], metadata["class_names"]))
    differing = {i: name for i, name in dataset.label_map().items() if model_classes.get(i) != name}
    if differing:
        raise DataError(
            f"{dataset.source}: classes {differing} (category id: name) are not classes of the model, whose classes "
            f"are {model_classes}; give the evaluation split the training split's class file"
        )
    return metadata["category_ids"]


class PeriodicEvaluation(keras.callbacks.Callback):
    """COCO evaluation on the validation split every `every` iterations (and at the end).

    Adds `val_AP`, `val_AP50`, ... to the epoch logs (TensorBoard and the history show them) and writes pictures of
    the detections on the first `num_pictures` validation images to TensorBoard under `log_dir`.
    """

    def __init__(self, dataset, ground_truth, data_config, batch_size, every, total, log_dir, num_pictures=3):
        super().__init__()
        self.dataset, self.ground_truth, self.data_config = dataset, ground_truth, data_config
        self.batch_size, self.every, self.total = batch_size, every, total
        self.writer = tf.summary.create_file_writer(log_dir)
        self.num_pictures = num_pictures

    def on_epoch_end(self, epoch, logs=None):
        iteration = int(self.model.optimizer.iterations.numpy())
        if iteration % self.every and iteration < self.total:
            return
        evaluation, _ = evaluate_model(
            self.model, self.dataset, self.data_config, self.batch_size, ground_truth=self.ground_truth
        )
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in evaluation.metrics.items()})
        print(f"\niteration {iteration}: COCO AP {evaluation.metrics['AP']:.3f}, AP50 {evaluation.metrics['AP50']:.3f}")
        with self.writer.as_default():
            tf.summary.image("detections", self._pictures(), step=iteration, max_outputs=self.num_pictures)

    def _pictures(self):
        shown = dataclasses.replace(self.dataset, records=self.dataset.records[: self.num_pictures])
        detections = detect(self.model, shown, self.data_config, len(shown.records))
        pictures = []
        for index, (record, image) in enumerate(zip(shown.records, load_images(shown))):
            picture = draw_batch_detections(image, detections, index, shown.class_names, 0.3, record.boxes)
            pictures.append(np.asarray(picture.resize((256, round(256 * picture.height / picture.width)))))
        height = max(p.shape[0] for p in pictures)
        return np.stack([np.pad(p, [[0, height - p.shape[0]], [0, 0], [0, 0]]) for p in pictures])


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the iteration and the loss term."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with a `NonFiniteLossError` at the first iteration whose loss is NaN or infinite, naming the
    loss term that went non-finite (the logs hold running means over the checkpoint interval, so a term stays
    non-finite once it was). First in the callback list: the step's weights are lost, but no backup of them is
    written and no `model.keras`; the backups keep the last good weights."""

    TERMS = {"classification_loss": "classification", "box_loss": "box", "regularization_loss": "regularization"}

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if "loss" not in logs or math.isfinite(float(logs["loss"])):
            return
        terms = [f"{label} loss {float(logs[key])}" for key, label in self.TERMS.items()
                 if key in logs and not math.isfinite(float(logs[key]))]
        iteration = int(self.model.optimizer.iterations.numpy())
        raise NonFiniteLossError(
            f"iteration {iteration}: {' and '.join(terms) or 'total loss ' + str(float(logs['loss']))}: training "
            "stopped (the backups hold the last finite weights; lower train.learning_rate, or look at the data and "
            "the loss settings)"
        )


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the current learning rate into the epoch logs, for TensorBoard and the history."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def train(config, model_dir, strategy="default", verbose=1):
    """Trains the experiment `config` (an `ExperimentConfig`) into `model_dir`; resumes if it holds a backup.

    Writes `config.yaml` (the resolved config), TensorBoard logs in `logs/`, a resumable backup in `backup/` at
    every `train.checkpoint_every` iterations, and the final `model.keras`. Returns the trained model.
    """
    train_config = config.train
    if train_config.eval_every % train_config.checkpoint_every:
        raise ValueError(
            f"train.eval_every ({train_config.eval_every}) must be a multiple of train.checkpoint_every "
            f"({train_config.checkpoint_every})"
        )
    train_set = read_split(config.data.train, config.data)
    val_set = read_split(config.data.val, config.data) if config.data.val.annotations else None
    os.makedirs(model_dir, exist_ok=True)
    dump_config(config, os.path.join(model_dir, CONFIG_FILE))

    keras.utils.set_random_seed(config.data.seed)  # the same initial weights for the same config
    strategy = make_strategy(strategy)
    with strategy.scope():
        model = build_retinanet(config.model, train_set.num_classes)
        model.metadata = {
            "class_names": list(train_set.class_names),
            "category_ids": [int(i) for i in train_set.category_ids],
            "config": to_dict(config),
        }
        model.compile(optimizer=make_optimizer(train_config), jit_compile=train_config.jit_compile)

    steps_per_epoch = train_config.checkpoint_every
    epochs = math.ceil(train_config.iterations / steps_per_epoch)
    callbacks = [StopOnNonFiniteLoss(), LearningRateLogger()]
    if val_set is not None:
        callbacks.append(
            PeriodicEvaluation(val_set, official_ground_truth(config.data.val), config.data, train_config.batch_size,
                               train_config.eval_every, epochs * steps_per_epoch, os.path.join(model_dir, "logs", "eval"))
        )
    callbacks += [
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq=min(100, steps_per_epoch)),
        keras.callbacks.BackupAndRestore(
            os.path.join(model_dir, "backup"), save_freq="epoch", double_checkpoint=True, delete_checkpoint=False
        ),
    ]
    model.fit(
        training_dataset(train_set, config.data, train_config.batch_size),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, with its seed
    )
    model.save(os.path.join(model_dir, MODEL_FILE))
    return model


def load_trained_model(path):
    """A `RetinaNet` from a `.keras` file or a model directory written by `train`."""
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no trained model at {path}")
    return keras.saving.load_model(path, safe_mode=True)


def model_data_config(model):
    """The `DataConfig` a model was trained with, from the metadata `train` stores in it."""
    config = model.metadata.get("config")
    if config is None:
        raise ValueError(
            "this model carries no experiment config (it was not trained with bin/train), so its input size and "
            "data splits are unknown"
        )
    return from_dict(ExperimentConfig, config, source="the model's stored config").data
