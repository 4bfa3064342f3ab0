"""COCO evaluation: result conversion, parity with plain pycocotools, per-class AP, empty results, output files."""

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retinanet.data import read_coco
from keras_retinanet.evaluation import METRIC_NAMES, detections_to_coco_results, evaluate_coco, write_evaluation

# cat 1 and dog 5 have ground truth, bird 7 has none. Areas: 400 and 500 (small), 1600 (medium), no large box.
SMALL_CONTENT = {
    "images": [
        {"id": 1, "file_name": "1.png", "height": 64, "width": 64},
        {"id": 2, "file_name": "2.png", "height": 64, "width": 64},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 7, "name": "bird"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [30, 30, 25, 20], "area": 500, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [5, 5, 40, 40], "area": 1600, "iscrowd": 0},
    ],
}


def _write(tmp_path, content, name="instances.json"):
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path


def _result(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def _run_pycocotools(annotations_path, results):
    """The plain pycocotools sequence: (stats, summary text)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(annotations_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    return evaluator.stats, summary.getvalue()


def test_ground_truth_turned_into_detections_scores_ap_1(tmp_path):
    """read_coco -> predict-shaped batch (padded) -> result dicts -> evaluation: a perfect round trip."""
    (tmp_path / "images").mkdir()
    for image in SMALL_CONTENT["images"]:
        Image.new("RGB", (image["width"], image["height"])).save(tmp_path / "images" / image["file_name"])
    annotations_path = _write(tmp_path, SMALL_CONTENT)
    dataset = read_coco(annotations_path, tmp_path / "images")
    assert len(dataset.records) == 2
    boxes = np.zeros((2, 4, 4), np.float32)
    classes = np.full((2, 4), -1, np.int32)
    for index, record in enumerate(dataset.records):
        boxes[index, : len(record.boxes)] = record.boxes
        classes[index, : len(record.labels)] = record.labels
    detections = {
        "boxes": boxes,
        "scores": np.where(classes >= 0, 0.9, 0.0),
        "classes": classes,
        "num_detections": (classes >= 0).sum(axis=1),
    }
    results = detections_to_coco_results([r.image_id for r in dataset.records], detections, dataset.category_ids)
    assert len(results) == 3

    evaluation = evaluate_coco(annotations_path, results)
    for name in ("AP", "AP50", "AP75", "APs", "APm", "AR1", "AR10", "AR100", "ARs", "ARm"):
        assert evaluation.metrics[name] == pytest.approx(1.0), name
    assert evaluation.metrics["APl"] == -1.0 and evaluation.metrics["ARl"] == -1.0  # no large ground truth
    assert evaluation.per_class_ap["cat"] == pytest.approx(1.0) and evaluation.per_class_ap["dog"] == pytest.approx(1.0)
    assert math.isnan(evaluation.per_class_ap["bird"])


def test_detections_to_coco_results_converts_maps_and_drops_padding():
    detections = {
        "boxes": np.array(
            [
                [[10.123456, 20.0, 30.5, 60.25], [0, 0, 5, 5], [1, 1, 2, 2]],
                [[3, 4, 13, 24], [0, 0, 1, 1], [0, 0, 1, 1]],
            ],
            np.float32,
        ),
        "scores": np.array([[0.91234567, 0.5, 0.4], [0.7, 0.0, 0.0]], np.float32),
        "classes": np.array([[2, 0, 1], [1, -1, -1]], np.int32),
        # The third detection of image 0 lies beyond num_detections: dropped although its class is valid.
        "num_detections": np.array([2, 1], np.int32),
    }
    results = detections_to_coco_results(np.array([42, 7]), detections, [1, 5, 90])
    assert results == [
        {"image_id": 42, "category_id": 90, "bbox": [10.12, 20.0, 20.38, 40.25], "score": 0.91235},
        {"image_id": 42, "category_id": 1, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.5},
        {"image_id": 7, "category_id": 5, "bbox": [3.0, 4.0, 10.0, 20.0], "score": 0.7},
    ]
    assert all(type(r["image_id"]) is int and type(r["category_id"]) is int for r in results)
    json.dumps(results)  # plain Python types only

    with pytest.raises(ValueError, match="class 2 has no category id"):
        detections_to_coco_results([42, 7], detections, [1, 5])


@pytest.fixture
def varied_ground_truth(tmp_path):
    """6 images of 256 x 256, categories 1, 5, 7, boxes from 6 to 180 px (all three COCO area ranges), a crowd box."""
    rng = np.random.default_rng(3)
    annotations = []
    for image_id in range(1, 7):
        for _ in range(rng.integers(2, 6)):
            w, h = np.exp(rng.uniform(np.log(6), np.log(180), 2)).round(1)
            x, y = rng.uniform(0, 256 - w), rng.uniform(0, 256 - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([1, 5, 7])),
                    "bbox": [round(x, 1), round(y, 1), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(len(annotations) == 4),
                }
            )
    content = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": 256, "width": 256} for i in range(1, 7)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}, {"id": 7, "name": "bird"}],
        "annotations": annotations,
    }
    return _write(tmp_path, content), content


def _noisy_results(content, seed=4):
    """Jittered ground-truth boxes (some with a wrong class, some missing) plus random false positives."""
    rng = np.random.default_rng(seed)
    results = []
    for annotation in content["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = annotation["bbox"]
        jitter = rng.normal(0, 0.08 * min(w, h), 4)
        category_id = annotation["category_id"] if rng.random() < 0.85 else 5
        bbox = [x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0)]
        results.append(_result(annotation["image_id"], category_id, [round(v, 2) for v in bbox], rng.uniform(0.3, 1)))
    for _ in range(15):
        x, y, w, h = rng.uniform(0, 150), rng.uniform(0, 150), rng.uniform(5, 100), rng.uniform(5, 100)
        results.append(_result(int(rng.integers(1, 7)), int(rng.choice([1, 5, 7])), [x, y, w, h], rng.uniform(0, 0.8)))
    return results


def test_metrics_equal_plain_pycocotools(varied_ground_truth):
    annotations_path, content = varied_ground_truth
    results = _noisy_results(content)
    stats, summary = _run_pycocotools(annotations_path, results)
    assert np.all((stats > 0) & (stats < 1))  # non-trivial: all area ranges have ground truth, some is missed

    evaluation = evaluate_coco(annotations_path, results)
    assert list(evaluation.metrics) == list(METRIC_NAMES)
    np.testing.assert_array_equal([evaluation.metrics[name] for name in METRIC_NAMES], stats)
    assert evaluation.summary == summary.rstrip("\n") and len(evaluation.summary.splitlines()) == 12

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(annotations_path))
    from_object = evaluate_coco(coco_gt, results)
    assert from_object.metrics == evaluation.metrics


def test_evaluation_prints_nothing_and_leaves_results_unchanged(varied_ground_truth, capsys):
    annotations_path, content = varied_ground_truth
    results = _noisy_results(content)
    original = copy.deepcopy(results)
    evaluate_coco(annotations_path, results)
    assert results == original
    assert capsys.readouterr().out == ""


def test_per_class_ap_one_class_found_the_other_missed(tmp_path):
    annotations_path = _write(tmp_path, SMALL_CONTENT)
    results = [_result(1, 1, [10, 10, 20, 20], 0.9), _result(2, 1, [5, 5, 40, 40], 0.8)]
    evaluation = evaluate_coco(annotations_path, results)
    assert evaluation.per_class_ap["cat"] == pytest.approx(1.0)
    assert evaluation.per_class_ap["dog"] == 0.0
    assert math.isnan(evaluation.per_class_ap["bird"])
    assert evaluation.metrics["AP"] == pytest.approx(0.5)  # the mean over categories with ground truth
    assert evaluation.format_per_class_table().splitlines() == [
        "class  AP",
        "-----  -----",
        "cat    1.000",
        "dog    0.000",
        "bird   n/a",
    ]


def test_empty_results_score_zero_or_minus_one_without_ground_truth(tmp_path):
    evaluation = evaluate_coco(_write(tmp_path, SMALL_CONTENT), [])
    expected = {name: 0.0 for name in METRIC_NAMES} | {"APl": -1.0, "ARl": -1.0}
    assert evaluation.metrics == expected
    assert evaluation.per_class_ap["cat"] == 0.0 and evaluation.per_class_ap["dog"] == 0.0
    assert math.isnan(evaluation.per_class_ap["bird"])


def test_missing_iscrowd_and_area_default_to_0_and_box_area(tmp_path):
    complete = _write(tmp_path, SMALL_CONTENT, "complete.json")
    sparse_content = copy.deepcopy(SMALL_CONTENT)
    for annotation in sparse_content["annotations"]:
        del annotation["iscrowd"], annotation["area"]
    sparse = _write(tmp_path, sparse_content, "sparse.json")
    # Image 2's cat is medium by its 40 x 40 box (area 1600): another default area would move it to another range.
    results = [_result(1, 1, [11, 10, 20, 20], 0.9), _result(2, 1, [5, 5, 30, 20], 0.8)]
    assert evaluate_coco(sparse, results).metrics == evaluate_coco(complete, results).metrics


def test_unknown_result_ids_and_duplicate_category_names_are_named(tmp_path):
    annotations_path = _write(tmp_path, SMALL_CONTENT)
    with pytest.raises(ValueError, match=r"image ids not in the ground truth: \[99\]"):
        evaluate_coco(annotations_path, [_result(99, 1, [0, 0, 5, 5], 0.5)])
    with pytest.raises(ValueError, match=r"category ids not in the ground truth: \[3\]"):
        evaluate_coco(annotations_path, [_result(1, 3, [0, 0, 5, 5], 0.5)])

    content = copy.deepcopy(SMALL_CONTENT)
    content["categories"][2]["name"] = "cat"
    with pytest.raises(ValueError, match=r"duplicate category names \['cat'\]"):
        evaluate_coco(_write(tmp_path, content, "duplicate_names.json"), [])


def test_write_evaluation_files(tmp_path):
    annotations_path = _write(tmp_path, SMALL_CONTENT)
    results = [_result(1, 1, [10, 10, 20, 20], 0.9)]
    evaluation = evaluate_coco(annotations_path, results)
    metrics_path, detections_path = write_evaluation(evaluation, results, tmp_path / "out" / "eval")

    with open(metrics_path) as file:
        metrics = json.load(file)
    assert set(metrics) == set(METRIC_NAMES) | {"per_class_AP"}
    assert {name: metrics[name] for name in METRIC_NAMES} == evaluation.metrics
    assert metrics["per_class_AP"] == {"cat": evaluation.per_class_ap["cat"], "dog": 0.0, "bird": None}
    with open(detections_path) as file:
        assert json.load(file) == results


def test_evaluation_on_the_images_a_reader_kept(tmp_path):
    """`image_ids` restricts the ground truth (e.g. to the images the bad-input policy kept); dicts work as ground
    truth too."""
    perfect_on_first = [_result(1, 1, [10, 10, 20, 20], 0.9), _result(1, 5, [30, 30, 25, 20], 0.8)]
    everything = evaluate_coco(copy.deepcopy(SMALL_CONTENT), perfect_on_first)
    kept = evaluate_coco(copy.deepcopy(SMALL_CONTENT), perfect_on_first, image_ids=[1])
    assert kept.metrics["AP"] == pytest.approx(1.0) and everything.metrics["AP"] < 0.8
    with pytest.raises(ValueError, match=r"image ids not in the ground truth: \[9\]"):
        evaluate_coco(copy.deepcopy(SMALL_CONTENT), perfect_on_first, image_ids=[1, 9])
