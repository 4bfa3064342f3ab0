"""`bin/evaluate`'s analysis files beside metrics.json: precision-recall curves, the COCO error breakdown, the
confusion matrix and galleries of the images with the most false positives and missed objects."""

import contextlib
import dataclasses
import io
import json
import os

import numpy as np

from keras_retinanet.data.pipeline import load_images
from keras_retinanet.evaluation import analysis, plots
from keras_retinanet.evaluation.coco_eval import coco_ground_truth
from keras_retinanet.visualization import DEFAULT_DRAW_THRESHOLD, draw_detections, image_grid

GALLERY_SIZE = 6


def write_analysis(output_dir, evaluation, ground_truth, results, dataset, evaluator="pycocotools",
                   score_threshold=DEFAULT_DRAW_THRESHOLD, iou_threshold=0.5, gallery_size=GALLERY_SIZE):
    """Writes pr_curves.png, error_breakdown.{json,png}, confusion_matrix.{json,png} and
    gallery_false_positives.png / gallery_missed.png (detections scoring >= `score_threshold` in their class
    colours, ground truth dashed) into `output_dir`; returns the paths written.

    `ground_truth` is what `evaluation` was computed against (a COCO file, dict or object), `results` its
    detections, `dataset` the `DetectionDataset` whose images they are."""
    os.makedirs(output_dir, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it indexes
        truth = coco_ground_truth(ground_truth).dataset
    image_ids = [record.image_id for record in dataset.records]
    kept = set(image_ids)
    truth = {**truth, "images": [image for image in truth["images"] if image["id"] in kept],
             "annotations": [a for a in truth["annotations"] if a["image_id"] in kept]}
    paths = [plots.pr_curves(evaluation, os.path.join(output_dir, "pr_curves.png"))]

    breakdown = analysis.error_breakdown(truth, results, image_ids, evaluator)
    paths.append(_write_json(os.path.join(output_dir, "error_breakdown.json"),
                             {name: entry["areas"] for name, entry in breakdown.items()}))
    if breakdown:
        paths.append(plots.error_breakdown(breakdown, os.path.join(output_dir, "error_breakdown.png")))

    confusion, per_image = analysis.match_detections(truth, results, iou_threshold, score_threshold)
    names = [category["name"] for category in sorted(truth["categories"], key=lambda c: c["id"])]
    paths.append(_write_json(os.path.join(output_dir, "confusion_matrix.json"), {
        "iou_threshold": iou_threshold, "score_threshold": score_threshold, "rows": [*names, "background"],
        "columns": [*names, "missed"], "counts": confusion.tolist()}))
    paths.append(plots.confusion_matrix(confusion, names, os.path.join(output_dir, "confusion_matrix.png"),
                                        iou_threshold, score_threshold))
    for kind, column in (("false_positives", 0), ("missed", 1)):
        worst = sorted((image_id for image_id in image_ids if per_image[image_id][column]),
                       key=lambda image_id: -per_image[image_id][column])[:gallery_size]
        if worst:
            paths.append(_gallery(os.path.join(output_dir, f"gallery_{kind}.png"), worst, dataset, results,
                                  score_threshold))
    return paths


def _gallery(path, image_ids, dataset, results, score_threshold):
    records = {record.image_id: record for record in dataset.records}
    shown = dataclasses.replace(dataset, records=[records[image_id] for image_id in image_ids])
    label_of = {category_id: label for label, category_id in enumerate(dataset.category_ids)}
    pictures = []
    for record, image in zip(shown.records, load_images(shown)):
        mine = [result for result in results if result["image_id"] == record.image_id]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in mine)]).reshape(-1, 4)
        pictures.append(draw_detections(
            image, boxes, scores=[r["score"] for r in mine], labels=[label_of[r["category_id"]] for r in mine],
            class_names=dataset.class_names, score_threshold=score_threshold, ground_truth_boxes=record.boxes))
    image_grid(pictures, columns=3).save(path)
    return path


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=1)
    return path
