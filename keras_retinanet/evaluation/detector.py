"""COCO evaluation of a trained detector, a Keras model or an exported LiteRT model, on a dataset of any format."""

import numpy as np

from keras_retinanet.data.coco import to_coco_ground_truth
from keras_retinanet.data.pipeline import load_images
from keras_retinanet.data.policy import DataError
from keras_retinanet.evaluation.coco_eval import detections_to_coco_results, evaluate_coco
from keras_retinanet.inference import detect
from keras_retinanet.progress import image_progress


def evaluate_model(model, dataset, data_config, batch_size, ground_truth=None, evaluator="pycocotools",
                   progress=False):
    """COCO evaluation of `model` on `dataset` with `evaluator` (see `EVALUATORS`): (evaluation, results).

    The ground truth is `dataset`'s own records in COCO form (VOC `difficult` objects and COCO crowds as crowd
    regions), or `ground_truth` (a COCO instances JSON, e.g. the official one with its mask areas) restricted to
    the images of `dataset`. Every class of `dataset` must be a class of the model, with the same category id and
    name; detections of model classes the dataset lacks (e.g. torchvision's background and unused COCO ids) are
    left out. `progress`: show a progress bar with images/s while detecting.
    """
    metadata = model.metadata or {}
    label_map = dict(zip(metadata["category_ids"], metadata["class_names"])) if "category_ids" in metadata else None
    detections = detect(model, dataset, data_config, batch_size, progress)
    return evaluate_detections(detections, dataset, label_map, ground_truth, evaluator)


def evaluate_litert(detector, dataset, ground_truth=None, evaluator="pycocotools", progress=False):
    """`evaluate_model` for an exported model (a `litert_runner.ExportedDetector`: LiteRT, ONNX, OpenVINO): each
    image fitted into the model's input (`detect_image`), detections mapped back to the image."""
    labels = {category_id: label for label, category_id in enumerate(detector.label_map)}
    update = image_progress(len(dataset.records), progress)
    per_image = []
    for image in load_images(dataset):
        per_image.append(detector.detect_image(image))
        update(len(per_image))
    per_image = [{**found, "classes": [labels[i] for i in found["category_ids"]]} for found in per_image]
    return evaluate_detections(batched_detections(per_image), dataset, detector.label_map, ground_truth, evaluator)


def batched_detections(per_image):
    """Per-image detections ([{"boxes" [D, 4], "scores" [D], "classes" [D] labels}]) as one padded batch, as
    `RetinaNet.predict` returns them (classes -1 where padded)."""
    size = max([len(found["scores"]) for found in per_image], default=0)
    detections = {
        "boxes": np.zeros((len(per_image), size, 4), np.float32),
        "scores": np.zeros((len(per_image), size), np.float32),
        "classes": np.full((len(per_image), size), -1, np.int64),
        "num_detections": np.array([len(found["scores"]) for found in per_image], np.int64),
    }
    for row, found in enumerate(per_image):
        count = len(found["scores"])
        detections["boxes"][row, :count] = np.reshape(found["boxes"], (count, 4))
        detections["scores"][row, :count] = found["scores"]
        detections["classes"][row, :count] = found["classes"]
    return detections


def evaluate_detections(detections, dataset, label_map=None, ground_truth=None, evaluator="pycocotools"):
    """(evaluation, results) of batched `detections` (as `RetinaNet.predict` returns them, in original pixels, one
    row per record of `dataset`) of a detector with `label_map` ({category id: name} in label order; None: the
    dataset's classes); what `evaluate_model` does once it has detected, for any detector."""
    image_ids = [record.image_id for record in dataset.records]
    known = set(dataset.category_ids)
    results = detections_to_coco_results(image_ids, detections, result_category_ids(label_map, dataset))
    results = [result for result in results if result["category_id"] in known]
    if ground_truth is None:
        ground_truth = to_coco_ground_truth(dataset)
    return evaluate_coco(ground_truth, results, image_ids=image_ids, evaluator=evaluator), results


def result_category_ids(label_map, dataset):
    """The category id of each of a model's labels, from its `label_map` ({category id: name}, in label order),
    checked against `dataset`'s; a model without one (None) is taken to have `dataset`'s classes."""
    if label_map is None:
        return dataset.category_ids
    differing = {i: name for i, name in dataset.label_map().items() if label_map.get(i) != name}
    if differing:
        raise DataError(
            f"{dataset.source}: classes {differing} (category id: name) are not classes of the model, whose classes "
            f"are {label_map}; give the evaluation split the training split's class file"
        )
    return list(label_map)
