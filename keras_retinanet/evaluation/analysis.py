"""What the errors are: the COCO error breakdown (Hoiem et al.'s analysis, as the COCO site documents it), a
confusion matrix between classes, and the false positives and missed objects of each image."""

import contextlib
import copy
import io

import numpy as np

from keras_retinanet.boxes.iou import pairwise_iou
from keras_retinanet.evaluation.coco_eval import coco_ground_truth, empty_results, evaluator_classes

BREAKDOWN = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
RECALL_POINTS = 101


def error_breakdown(ground_truth, results, image_ids=None, evaluator="pycocotools"):
    """The precision-recall curves of each category and over all, with each kind of error forgiven in turn.

    C75 and C50: PR at IoU 0.75 and 0.5. Loc: at IoU 0.1 (localisation errors forgiven, duplicates not). Sim: also
    forgiving detections on objects of another class of the same supercategory; Oth: on objects of any other class
    (a confused detection matches the other class's object as an ignored region, so that it counts neither as a
    true nor as a false positive; ignored regions overlap by COCO's crowd rule, intersection over the detection's
    area, where the COCO site's MATLAB analysis uses IoU). BG: also forgiving the background false positives
    (precision 1 up to the recall reached). FN: also the missed objects (precision 1 at every recall).

    Returns {category name, and "overall" (the mean over categories with ground truth): {"areas": {kind: area
    under the curve}, "curves": {kind: precision at 101 recall points}}}; categories without ground truth are left
    out.
    """
    coco_class, cocoeval_class = evaluator_classes(evaluator)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_ground_truth(ground_truth, coco_class)
    dataset = coco_gt.dataset
    categories = {category["id"]: category for category in dataset["categories"]}
    image_ids = sorted(coco_gt.imgs) if image_ids is None else sorted(set(image_ids))
    breakdown = {}
    for category_id, category in sorted(categories.items()):
        if not any(a["category_id"] == category_id and not a.get("iscrowd", 0) for a in dataset["annotations"]):
            continue
        detections = [dict(result) for result in results if result["category_id"] == category_id]
        supercategory = category.get("supercategory")
        same_super = {i for i, other in categories.items()
                      if i != category_id and supercategory is not None and other.get("supercategory") == supercategory}
        curves = {}
        strict = _precision(coco_class, cocoeval_class, dataset, detections, category_id, image_ids, (0.75, 0.5, 0.1))
        curves["C75"], curves["C50"], curves["Loc"] = strict[0]
        (curves["Sim"],), _ = _precision(coco_class, cocoeval_class, _forgiving(dataset, category_id, same_super),
                                         detections, category_id, image_ids, (0.1,))
        other = set(categories) - {category_id}
        (curves["Oth"],), (reached,) = _precision(coco_class, cocoeval_class, _forgiving(dataset, category_id, other),
                                                  detections, category_id, image_ids, (0.1,))
        recall = np.linspace(0.0, 1.0, RECALL_POINTS)
        curves["BG"] = (recall <= reached + 1e-12).astype(np.float64)
        curves["FN"] = np.ones(RECALL_POINTS)
        breakdown[category["name"]] = curves
    if breakdown:
        breakdown["overall"] = {kind: np.mean([curves[kind] for curves in breakdown.values()], axis=0)
                                for kind in BREAKDOWN}
    return {name: {"areas": {kind: float(np.mean(curve)) for kind, curve in curves.items()},
                   "curves": {kind: np.asarray(curve).tolist() for kind, curve in curves.items()}}
            for name, curves in breakdown.items()}


def _forgiving(dataset, category_id, forgiven):
    """`dataset` with the objects of the `forgiven` categories turned into ignored regions of `category_id`."""
    dataset = copy.copy(dataset)
    dataset["annotations"] = [
        {**annotation, "category_id": category_id, "iscrowd": 1} if annotation["category_id"] in forgiven
        else annotation for annotation in dataset["annotations"]
    ]
    return dataset


def _precision(coco_class, cocoeval_class, dataset, detections, category_id, image_ids, iou_thresholds):
    """(precision [len(iou_thresholds), 101] with -1 as 0, the largest recall reached at each threshold) of one
    category's `detections` (all areas, 100 detections an image)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_ground_truth(dataset, coco_class)
        coco_dt = coco_gt.loadRes(detections) if detections else empty_results(coco_gt)
        evaluation = cocoeval_class(coco_gt, coco_dt, iouType="bbox")
        params = evaluation.params
        params.catIds, params.imgIds = [category_id], image_ids
        params.iouThrs = np.asarray(iou_thresholds, np.float64)
        params.areaRng, params.areaRngLbl, params.maxDets = [[0.0, 1e10]], ["all"], [100]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = np.maximum(evaluation.eval["precision"][:, :, 0, 0, 0], 0.0)
    recall = np.maximum(evaluation.eval["recall"][:, 0, 0, 0], 0.0)
    return precision, recall


def match_detections(dataset, results, iou_threshold=0.5, score_threshold=0.5):
    """Detections scoring >= `score_threshold` matched to objects, per image, in descending score order: each takes
    the unmatched object of highest IoU >= `iou_threshold`, of any class (crowd regions are not objects).

    Returns (confusion, per_image): `confusion` [K + 1, K + 1] counts, rows the true class and columns the
    predicted one, in category id order; the last row counts detections that matched no object (background), the
    last column objects no detection matched (missed). `per_image` {image id: (false positives, missed objects)},
    where a detection of the wrong class is both.
    """
    category_ids = sorted(category["id"] for category in dataset["categories"])
    index = {category_id: i for i, category_id in enumerate(category_ids)}
    background = missed = len(category_ids)
    objects, detections = {}, {}
    for annotation in dataset["annotations"]:
        if not annotation.get("iscrowd", 0):
            objects.setdefault(annotation["image_id"], []).append(annotation)
    for result in results:
        if result["score"] >= score_threshold:
            detections.setdefault(result["image_id"], []).append(result)
    confusion = np.zeros((len(category_ids) + 1,) * 2, np.int64)
    per_image = {}
    for image in dataset["images"]:
        image_objects = objects.get(image["id"], [])
        image_detections = sorted(detections.get(image["id"], []), key=lambda result: -result["score"])
        ious = _iou_matrix([d["bbox"] for d in image_detections], [o["bbox"] for o in image_objects])
        taken = np.zeros(len(image_objects), bool)
        false_positives = confused = 0
        for row, detection in enumerate(image_detections):
            candidates = np.where(taken, -1.0, ious[row]) if len(image_objects) else np.zeros(0)
            predicted = index[detection["category_id"]]
            if len(candidates) and candidates.max() >= iou_threshold:
                best = int(np.argmax(candidates))
                taken[best] = True
                truth = index[image_objects[best]["category_id"]]
                confusion[truth, predicted] += 1
                confused += truth != predicted
            else:
                confusion[background, predicted] += 1
                false_positives += 1
        for matched, annotation in zip(taken, image_objects):
            if not matched:
                confusion[index[annotation["category_id"]], missed] += 1
        per_image[image["id"]] = (false_positives + confused, int(np.sum(~taken)) + confused)
    return confusion, per_image


def _iou_matrix(first, second):
    """IoU of COCO [x, y, w, h] boxes, [len(first), len(second)] (`pairwise_iou` on their corners)."""
    if not len(first) or not len(second):
        return np.zeros((len(first), len(second)))
    corners = [np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
               for boxes in (np.asarray(first, np.float32), np.asarray(second, np.float32))]
    return pairwise_iou(*corners).numpy()
