"""COCO box evaluation: detections to result dicts, the 12 standard metrics, per-class AP, precision curves.

Two evaluators give the same numbers (a test checks all 12 on the same files): pycocotools, the reference, and
faster-coco-eval, its C++ reimplementation (several times faster on large sets).
"""

import contextlib
import dataclasses
import functools
import io
import json
import math
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retinanet.data.records import DataError
from keras_retinanet.errors import InputError

# The order of COCOeval.stats.
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
EVALUATORS = ("pycocotools", "faster_coco_eval")


class EvaluatorError(InputError, ValueError):
    """An evaluator that is unknown, or not installed."""


def evaluator_classes(evaluator):
    """(COCO, COCOeval) classes of `evaluator`, one of `EVALUATORS`."""
    if evaluator == "pycocotools":
        return COCO, COCOeval
    if evaluator == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO as FasterCOCO
            from faster_coco_eval import COCOeval_faster
        except ImportError:
            raise EvaluatorError("evaluator 'faster_coco_eval' needs the faster-coco-eval package (pip install "
                             "faster-coco-eval), or choose 'pycocotools'") from None
        return FasterCOCO, functools.partial(COCOeval_faster, print_function=print)
    raise EvaluatorError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")


def detections_to_coco_results(image_ids, detections, category_ids):
    """Batched detections, as `RetinaNet.predict` returns them, -> a list of COCO result dicts.

    Args:
        image_ids: [B] the dataset's image id of each image of the batch.
        detections: dict with `boxes` [B, D, 4] `xyxy` in pixels of the original image, `scores` [B, D],
            `classes` [B, D] contiguous labels (-1 = padding) and `num_detections` [B].
        category_ids: the dataset's category id of each contiguous label (`DetectionDataset.category_ids`).

    Returns:
        [{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], boxes rounded to 0.01 px and scores to 1e-5
        (finer than any of the metrics can see, and a compact detections.json).
    """
    boxes = np.asarray(detections["boxes"], np.float64)
    scores = np.asarray(detections["scores"], np.float64)
    classes = np.asarray(detections["classes"], np.int64)
    num_detections = np.asarray(detections["num_detections"], np.int64)
    category_ids = np.asarray(category_ids, np.int64)
    if len(image_ids) != boxes.shape[0]:
        raise ValueError(f"{len(image_ids)} image ids for a batch of {boxes.shape[0]} detections")

    results = []
    for image_id, image_boxes, image_scores, image_classes, count in zip(
        image_ids, boxes, scores, classes, num_detections
    ):
        keep = (np.arange(len(image_classes)) < count) & (image_classes >= 0)
        if np.any(image_classes[keep] >= len(category_ids)):
            raise ValueError(
                f"image {image_id}: class {image_classes[keep].max()} has no category id "
                f"({len(category_ids)} classes)"
            )
        xywh = np.round(np.concatenate([image_boxes[:, :2], image_boxes[:, 2:] - image_boxes[:, :2]], axis=1), 2)
        for box, score, label in zip(xywh[keep], np.round(image_scores[keep], 5), image_classes[keep]):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_ids[label]),
                    "bbox": box.tolist(),
                    "score": float(score),
                }
            )
    return results


@dataclasses.dataclass
class CocoEvaluation:
    """The outcome of `evaluate_coco`.

    Attributes:
        metrics: the 12 COCOeval statistics by `METRIC_NAMES`; -1 where pycocotools has no ground truth to score
            (e.g. APs on a dataset without small objects).
        per_class_ap: category name -> AP at IoU 0.50:0.95 (all areas, 100 detections), for every ground-truth
            category in id order; NaN for a category without (non-crowd) ground-truth boxes.
        summary: pycocotools' standard 12-line table.
        precision: [10 IoU thresholds 0.5:0.95, 101 recall points 0:1, categories] precision (all areas, 100
            detections; -1 where a category has no ground truth), for precision-recall curves.
        category_names: the categories of `precision`'s last axis, in id order.
    """

    metrics: dict[str, float]
    per_class_ap: dict[str, float]
    summary: str
    precision: np.ndarray = None
    category_names: tuple = ()

    def precision_curves(self, iou_index):
        """Precision at the 101 recall points of IoU threshold `iou_index` (0: 0.5, 5: 0.75): ({category name:
        curve} of the categories with ground truth, their mean curve, or None without any)."""
        precision = self.precision[iou_index]  # [101, K]
        valid = (precision > -1).all(axis=0)
        curves = {name: precision[:, k] for k, name in enumerate(self.category_names) if valid[k]}
        return curves, precision[:, valid].mean(axis=1) if valid.any() else None

    def format_per_class_table(self):
        """An aligned two-column text table of `per_class_ap` ("n/a" for categories without ground truth)."""
        width = max([len("class")] + [len(name) for name in self.per_class_ap])
        lines = [f"{'class':<{width}}  AP", f"{'-' * width}  -----"]
        for name, ap in self.per_class_ap.items():
            lines.append(f"{name:<{width}}  {'n/a' if math.isnan(ap) else f'{ap:.3f}'}")
        return "\n".join(lines)


def evaluate_coco(ground_truth, results, image_ids=None, evaluator="pycocotools"):
    """COCO box AP / AR of `results` against `ground_truth`, with `evaluator` (one of `EVALUATORS`), its prints
    silenced.

    Args:
        ground_truth: a path to a COCO instances JSON, its content as a dict, or a `pycocotools.coco.COCO`.
            Annotations without
            `iscrowd` get 0 and those without `area` get the box area w * h (pycocotools needs both; this sets them
            on a COCO object passed in).
        results: COCO result dicts (see `detections_to_coco_results`); not modified. Every image id and category
            id must be in the ground truth. An empty list is evaluated as no detections at all: every metric is 0,
            or -1 where there is no ground truth to score, as COCOeval reports it.
        image_ids: evaluate on these images only (e.g. those a reader kept); default: all of the ground truth.
        evaluator: "pycocotools" (the reference) or "faster_coco_eval".

    Returns:
        A `CocoEvaluation`.
    """
    coco_class, cocoeval_class = evaluator_classes(evaluator)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_ground_truth(ground_truth, coco_class)
    _complete_ground_truth(coco_gt)
    _check_results(coco_gt, results)
    names = [coco_gt.cats[category_id]["name"] for category_id in sorted(coco_gt.cats)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"ground truth has duplicate category names {duplicates}: per-class AP needs unique names")

    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes adds keys to the dicts it gets, and raises on an empty list.
        coco_dt = coco_gt.loadRes([dict(result) for result in results]) if results else empty_results(coco_gt)
        evaluator = cocoeval_class(coco_gt, coco_dt, iouType="bbox")
        if image_ids is not None:
            unknown = sorted(set(image_ids) - set(coco_gt.imgs))
            if unknown:
                raise ValueError(f"image ids not in the ground truth: {unknown[:10]}")
            evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()

    metrics = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
    # precision: [IoU thresholds, recall thresholds, categories, area ranges, max detections]; -1 = no ground truth.
    precision = evaluator.eval["precision"][:, :, :, evaluator.params.areaRngLbl.index("all"), -1]
    per_class_ap = {}
    for index, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, index]
        values = values[values > -1]
        per_class_ap[coco_gt.cats[category_id]["name"]] = float(values.mean()) if values.size else math.nan
    return CocoEvaluation(metrics=metrics, per_class_ap=per_class_ap, summary=summary.getvalue().rstrip("\n"),
                          precision=precision, category_names=tuple(per_class_ap))


def write_evaluation(evaluation, results, output_dir):
    """Writes `metrics.json` (the 12 metrics and `per_class_AP`, NaN as null) and `detections.json` (`results`).

    Returns:
        (metrics path, detections path); `output_dir` is created if missing.
    """
    os.makedirs(output_dir, exist_ok=True)
    metrics_path = os.path.join(output_dir, "metrics.json")
    detections_path = os.path.join(output_dir, "detections.json")
    metrics = dict(evaluation.metrics)
    metrics["per_class_AP"] = {name: None if math.isnan(ap) else ap for name, ap in evaluation.per_class_ap.items()}
    with open(metrics_path, "w", encoding="utf-8") as file:
        json.dump(metrics, file, indent=2, allow_nan=False)
    with open(detections_path, "w", encoding="utf-8") as file:
        json.dump(list(results), file)
    return metrics_path, detections_path


def coco_ground_truth(ground_truth, coco_class=COCO):
    """A `coco_class` object of `ground_truth` (a path, an instances dict or a COCO object of either evaluator)."""
    if isinstance(ground_truth, coco_class):
        return ground_truth
    if hasattr(ground_truth, "dataset"):  # the other evaluator's COCO
        ground_truth = ground_truth.dataset
    if isinstance(ground_truth, dict):
        coco_gt = coco_class()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        return coco_gt
    return coco_class(os.fspath(ground_truth))


def _complete_ground_truth(coco_gt):
    for annotation in coco_gt.anns.values():
        annotation.setdefault("iscrowd", 0)
        if "area" not in annotation:
            annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]


def _check_results(coco_gt, results):
    """pycocotools raises an opaque assertion on unknown image ids and silently drops unknown category ids."""
    image_ids = {result["image_id"] for result in results}
    category_ids = {result["category_id"] for result in results}
    unknown_images = sorted(image_ids - set(coco_gt.imgs))
    if unknown_images:
        raise ValueError(f"results refer to image ids not in the ground truth: {unknown_images[:10]}")
    unknown_categories = sorted(category_ids - set(coco_gt.cats))
    if unknown_categories:
        raise ValueError(f"results refer to category ids not in the ground truth: {unknown_categories}")


def empty_results(coco_gt):
    """A result set without detections (what loadRes would build from an empty list, if it accepted one)."""
    coco_dt = type(coco_gt)()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": coco_gt.dataset["categories"],
        "annotations": [],
    }
    coco_dt.createIndex()
    return coco_dt
