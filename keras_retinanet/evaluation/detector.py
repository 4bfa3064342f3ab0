"""COCO evaluation of a trained detector on a dataset of any format."""

from keras_retinanet.data.coco import to_coco_ground_truth
from keras_retinanet.data.policy import DataError
from keras_retinanet.evaluation.coco_eval import detections_to_coco_results, evaluate_coco
from keras_retinanet.inference import detect


def evaluate_model(model, dataset, data_config, batch_size, ground_truth=None, evaluator="pycocotools"):
    """COCO evaluation of `model` on `dataset` with `evaluator` (see `EVALUATORS`): (evaluation, results).

    The ground truth is `dataset`'s own records in COCO form (VOC `difficult` objects and COCO crowds as crowd
    regions), or `ground_truth` (a COCO instances JSON, e.g. the official one with its mask areas) restricted to
    the images of `dataset`. Every class of `dataset` must be a class of the model, with the same category id and
    name; detections of model classes the dataset lacks (e.g. torchvision's background and unused COCO ids) are
    left out.
    """
    image_ids = [record.image_id for record in dataset.records]
    detections = detect(model, dataset, data_config, batch_size)
    known = set(dataset.category_ids)
    results = detections_to_coco_results(image_ids, detections, result_category_ids(model, dataset))
    results = [result for result in results if result["category_id"] in known]
    if ground_truth is None:
        ground_truth = to_coco_ground_truth(dataset)
    return evaluate_coco(ground_truth, results, image_ids=image_ids, evaluator=evaluator), results


def result_category_ids(model, dataset):
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
