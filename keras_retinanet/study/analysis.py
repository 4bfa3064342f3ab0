"""Measurements a study makes beside COCO AP: the anchors' imbalance, the loss distribution of Figure 4, what
OHEM's NMS removes (and the largest overlap of two anchors, which bounds it), and the inference time of Table 1e."""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_retinanet.benchmark.timing import median_seconds
from keras_retinanet.boxes import AnchorLabeler, AnchorTarget, GroundTruth, pairwise_iou
from keras_retinanet.data.pipeline import padded_size, training_dataset
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


def ohem_nms_drops(model, dataset, data_config, batches, batch_size):
    """What OHEM's NMS changes in its minibatches, on `model` (trained with an `OHEMLoss`) over `batches` batches of
    `dataset` drawn as training draws them, without augmentation: {"images", "nms_iou_threshold",
    "dropped_per_image": the anchors the minibatch selected without NMS holds and the one selected with NMS at the
    loss's `nms_iou_threshold` lacks, "selected_per_image": the minibatch's size}, means per image. Anchors are
    scored by the loss on the model's predictions in inference mode (training scores them in training mode)."""
    from keras_retinanet.losses import OHEMLoss

    loss = model.classification_loss
    if not isinstance(loss, OHEMLoss):
        raise ValueError(f"the model's classification loss is a {type(loss).__name__}, not an OHEMLoss")
    # NMS at IoU 1 removes nothing: no two distinct anchors reach IoU 1.
    without_nms = OHEMLoss.from_config({**loss.get_config(), "nms_iou_threshold": 1.0})
    dropped, selected, images = 0, 0, 0
    for batch, targets in _unaugmented_batches(dataset, data_config, batch_size).take(batches):
        anchors, anchor_targets = model.label_anchors(batch, targets)
        logits = tf.cast(model(batch, training=False)["class_logits"], tf.float32)
        losses, weights, positives = loss.anchor_losses(anchor_targets["class_targets"], logits, None)
        with_nms, plain = (mining.select_anchors(losses, weights, positives, anchors)[1] > 0
                           for mining in (loss, without_nms))
        dropped += int(tf.reduce_sum(tf.cast(plain & ~with_nms, tf.int32)))
        selected += int(tf.reduce_sum(tf.cast(with_nms, tf.int32)))
        images += int(batch.shape[0])
    return {"images": images, "nms_iou_threshold": loss.nms_iou_threshold,
            "dropped_per_image": dropped / max(1, images), "selected_per_image": selected / max(1, images)}


def largest_anchor_iou(experiment, chunk=1024):
    """The largest IoU between two distinct anchors of `experiment`'s anchors on its square training input
    (`data.min_size`, padded): an NMS over anchors at a higher IoU threshold can remove none of them."""
    size = padded_size(experiment.data.min_size, experiment.data.size_divisor)
    anchors = tf.cast(build_anchor_generator(experiment.model.anchors)([size, size]), tf.float32)
    count = int(anchors.shape[0])
    largest = 0.0
    for start in range(0, count, chunk):
        iou = pairwise_iou(anchors[start:start + chunk], anchors).numpy()
        rows = np.arange(iou.shape[0])
        iou[rows, start + rows] = 0.0  # each anchor with itself
        largest = max(largest, float(iou.max()))
    return largest


def _normalised_sorted(losses):
    losses = np.sort(losses.astype(np.float64))
    total = losses.sum()
    return losses / total if total > 0 else losses


def seconds_per_image(model, image_size, repeats=10):
    """Median wall time of `predict_on_batch` (network, decoding, NMS) on one image of `image_size` x `image_size`
    (after a warm-up call)."""
    image = np.random.default_rng(0).uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)
    return median_seconds(lambda: model.predict_on_batch(image), repeats)
