"""The callbacks of `train`: periodic COCO evaluation, a stop at the first non-finite loss, the learning rate in the
logs, a backup at every checkpoint interval."""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from keras_retinanet.data.pipeline import load_images
from keras_retinanet.errors import InputError
from keras_retinanet.evaluation.detector import evaluate_model
from keras_retinanet.inference import detect
from keras_retinanet.visualization import DEFAULT_DRAW_THRESHOLD, draw_batch_detections


class PeriodicEvaluation(keras.callbacks.Callback):
    """COCO evaluation on the validation split every `every` iterations (and at the end).

    Adds `val_AP`, `val_AP50`, ... to the epoch logs (TensorBoard and the history show them), and writes to
    TensorBoard under `log_dir` the PR curves of each class (`write_pr_curves`) and pictures of the detections
    (score >= `DEFAULT_DRAW_THRESHOLD`, ground truth dashed) on the first `num_pictures` validation images.
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
            write_pr_curves(evaluation, iteration)

    def _pictures(self):
        shown = dataclasses.replace(self.dataset, records=self.dataset.records[: self.num_pictures])
        detections = detect(self.model, shown, self.data_config, len(shown.records))
        pictures = []
        for index, (record, image) in enumerate(zip(shown.records, load_images(shown))):
            picture = draw_batch_detections(image, detections, index, shown.class_names, DEFAULT_DRAW_THRESHOLD,
                                            record.boxes)
            pictures.append(np.asarray(picture.resize((256, round(256 * picture.height / picture.width)))))
        height = max(p.shape[0] for p in pictures)
        return np.stack([np.pad(p, [[0, height - p.shape[0]], [0, 0], [0, 0]]) for p in pictures])


def write_pr_curves(evaluation, step):
    """TensorBoard PR curves (the PR Curves tab) of each class and over all, at IoU 0.5 and 0.75, from a
    `CocoEvaluation`, into the default summary writer. COCO gives precision at 101 recall points, not per score
    threshold, so the curves carry no counts."""
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary

    recall = np.linspace(1.0, 0.0, 101)  # the plugin orders points by rising threshold, so falling recall
    zeros = np.zeros(101)
    for iou_index, iou_name in ((0, "iou50"), (5, "iou75")):
        curves, overall = evaluation.precision_curves(iou_index)
        if overall is not None:
            curves["overall"] = overall
        for name, values in curves.items():
            summary = pr_curve_summary.raw_data_pb(f"pr_{iou_name}/{name}", zeros, zeros, zeros, zeros,
                                                   values[::-1], recall, num_thresholds=101)
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


class NonFiniteLossError(InputError, RuntimeError):
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


class BackupEveryEpoch(keras.callbacks.Callback):
    """Writes a `Backups` backup at the end of every epoch (checkpoint interval)."""

    def __init__(self, backups):
        super().__init__()
        self.backups = backups

    def on_epoch_end(self, epoch, logs=None):
        self.backups.save(self.model, epoch + 1)
