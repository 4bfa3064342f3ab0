"""A dataset drawn as the model sees it (`bin/inspect_dataset --draw` and `--draw_augmented`): network inputs with
their boxes and the anchors those match, and training images as the augmentation gives them."""

import os

import numpy as np

from keras_retinanet.boxes.labels import GroundTruth
from keras_retinanet.data.pipeline import load_images, preprocess_image, training_dataset
from keras_retinanet.data.statistics import box_iou
from keras_retinanet.progress import image_progress
from keras_retinanet.visualization import draw_anchor_matches, draw_detections


def draw_dataset(dataset, geometry, count, output_dir):
    """Writes the first `count` images of `dataset` as network inputs (`preprocess_image` per `geometry.data`) with
    their boxes, captioned with the IoU of their best anchor, the anchors they match and each box's best anchor
    (`visualization.draw_anchor_matches`), to PNG files in `output_dir`, with a progress bar; returns their paths."""

    def pictures():
        for index, (record, image) in enumerate(zip(dataset.records[:count], load_images(dataset))):
            model_input, _, _ = preprocess_image(image, geometry.data)
            boxes = geometry.scale_boxes(record.boxes, record.height, record.width)
            anchors = geometry.anchors(model_input.shape[:2])
            name = os.path.splitext(os.path.basename(record.path))[0] or str(record.image_id)
            yield f"{index:04d}_{name}.png", draw_anchor_matches(
                _pixels(model_input), boxes, record.labels, anchors, box_iou(boxes, anchors),
                geometry.matcher.positive_threshold, dataset.class_names,
                ignore_boxes=geometry.scale_boxes(record.ignore_boxes, record.height, record.width),
            )

    return _save(pictures(), min(count, len(dataset.records)), output_dir)


def draw_augmented(dataset, data, count, output_dir):
    """Writes `count` images of `dataset` as `training_dataset` gives them per `data` (a `DataConfig`), with their
    boxes and ignore regions (dashed), to `augmented_0000.png` ... in `output_dir`, with a progress bar; returns
    their paths."""

    def pictures():
        for index, (images, targets) in enumerate(training_dataset(dataset, data, batch_size=1).take(count)):
            boxes, labels = targets["boxes"][0].numpy(), targets["labels"][0].numpy()
            yield f"augmented_{index:04d}.png", draw_detections(
                _pixels(images[0]), boxes[labels >= 0], labels=labels[labels >= 0], class_names=dataset.class_names,
                ground_truth_boxes=boxes[labels == GroundTruth.IGNORE_REGION],
            )

    return _save(pictures(), count, output_dir)


def _pixels(image):
    """A float network input as the uint8 picture it shows."""
    return np.clip(np.round(np.asarray(image)), 0, 255).astype(np.uint8)


def _save(pictures, count, output_dir):
    """Saves the (file name, PIL picture) pairs into `output_dir`, with a progress bar over `count`."""
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    update = image_progress(count)
    for name, picture in pictures:
        path = os.path.join(output_dir, name)
        picture.save(path)
        paths.append(path)
        update(len(paths))
    return paths
