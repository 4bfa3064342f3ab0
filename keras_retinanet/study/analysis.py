"""Measurements a study makes beside COCO AP: the anchors' imbalance, the loss distribution of Figure 4, and the
inference time of Table 1e."""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_retinanet.benchmark.timing import median_seconds
from keras_retinanet.boxes import AnchorLabeler, AnchorTarget, GroundTruth
from keras_retinanet.data.pipeline import training_dataset
from keras_retinanet.data.statistics import InputGeometry
from keras_retinanet.models.factory import build_anchor_generator, build_matcher


def _unaugmented_batches(dataset, data_config, batch_size):
    """One pass over `dataset` as training sees it, without augmentation: (images, {"boxes", "labels"})."""
    config = dataclasses.replace(data_config, augmentation=(), horizontal_flip=False, scale_jitter=(1.0, 1.0))
    return training_dataset(dataset, config, batch_size).take(max(1, len(dataset.records) // batch_size))


def anchor_balance(dataset, experiment):
    """{"positive", "negative", "ignored"} anchor counts over every image of `dataset` once, labelled as the loss
    sees them: resized by `experiment`'s data settings, padded to a multiple of `data.size_divisor` (a training
    batch of mixed sizes pads to its largest), with its anchors and matcher (`InputGeometry`)."""
    geometry = InputGeometry(experiment.data, build_anchor_generator(experiment.model.anchors),
                             build_matcher(experiment.model.matcher))
    labeler = AnchorLabeler(geometry.matcher, ignore_region_threshold=experiment.model.ignore_region_threshold)
    counts = np.zeros(3, np.int64)
    for record in dataset.records:
        anchors = geometry.anchors(geometry.padded_size(*geometry.resized_size(record.height, record.width)))
        boxes = geometry.scale_boxes(np.concatenate([record.boxes, record.ignore_boxes]), record.height, record.width)
        labels = np.concatenate([record.labels, np.full(len(record.ignore_boxes), GroundTruth.IGNORE_REGION)])
        classes = labeler(anchors, boxes, labels.astype(np.int32))["class_targets"].numpy()
        counts += [(classes >= 0).sum(), (classes == AnchorTarget.BACKGROUND).sum(),
                   (classes == AnchorTarget.IGNORED).sum()]
    return dict(zip(("positive", "negative", "ignored"), counts.tolist()))


def loss_distribution(model, dataset, data_config, gammas, max_images, batch_size=8):
    """Figure 4's data: {gamma: (positive anchors' losses, negative anchors' losses)}, each sorted ascending and
    normalised to sum to one, of the focal loss (no alpha) with each gamma on `model`'s predictions over
    `max_images` images drawn as training draws them (shuffled, so some may come twice), without augmentation. An
    anchor's loss sums its classes; ignored anchors are left out."""
    from keras_retinanet.losses import FocalLoss

    losses = {gamma: ([], []) for gamma in gammas}
    batches = _unaugmented_batches(dataset, data_config, batch_size).take(max(1, max_images // batch_size))
    for images, targets in batches:
        _, anchor_targets = model.label_anchors(images, targets)
        labels = anchor_targets["class_targets"]
        logits = tf.cast(model(images, training=False)["class_logits"], tf.float32)
        one_hot = tf.one_hot(labels, tf.shape(logits)[-1])
        for gamma in gammas:
            anchor_losses = tf.reduce_sum(FocalLoss(alpha=None, gamma=gamma).element_losses(one_hot, logits), -1)
            losses[gamma][0].append(tf.boolean_mask(anchor_losses, labels >= 0).numpy())
            losses[gamma][1].append(tf.boolean_mask(anchor_losses, labels == -1).numpy())
    return {gamma: tuple(_normalised_sorted(np.concatenate(parts)) for parts in pair)
            for gamma, pair in losses.items()}


def _normalised_sorted(losses):
    losses = np.sort(losses.astype(np.float64))
    total = losses.sum()
    return losses / total if total > 0 else losses


def seconds_per_image(model, image_size, repeats=10):
    """Median wall time of `predict_on_batch` (network, decoding, NMS) on one image of `image_size` x `image_size`
    (after a warm-up call)."""
    image = np.random.default_rng(0).uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    return median_seconds(lambda: model.predict_on_batch(image), repeats)
