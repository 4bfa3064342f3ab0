"""Evaluation beyond the 12 numbers: faster-coco-eval against pycocotools, the COCO error breakdown and the
confusion matrix on hand-made cases, TensorBoard PR curves, and bin/evaluate's analysis files."""

import numpy as np
import pytest

from keras_retinanet.evaluation import evaluate_coco
from keras_retinanet.evaluation.analysis import BREAKDOWN, error_breakdown, match_detections

CATEGORIES = [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"},
              {"id": 3, "name": "car", "supercategory": "vehicle"}]


def _truth(boxes_per_image):
    """A COCO dict: image i holds the (category id, [x, y, w, h]) objects of boxes_per_image[i]."""
    objects = [(image_id, category_id, box) for image_id, boxes in enumerate(boxes_per_image, 1)
               for category_id, box in boxes]
    annotations = [{"id": number, "image_id": image_id, "category_id": category_id, "bbox": box,
                    "area": box[2] * box[3], "iscrowd": 0}
                   for number, (image_id, category_id, box) in enumerate(objects, 1)]
    return {"images": [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.png"}
                       for i in range(1, len(boxes_per_image) + 1)],
            "annotations": annotations, "categories": CATEGORIES}


def _random_case(seed, num_images=30):
    rng = np.random.default_rng(seed)
    boxes_per_image, results = [], []
    for image_id in range(1, num_images + 1):
        objects = [(int(rng.integers(1, 4)), [float(v) for v in rng.uniform(0, 120, 2)] +
                    [float(v) for v in rng.uniform(8, 80, 2)]) for _ in range(rng.integers(0, 6))]
        boxes_per_image.append(objects)
        for category_id, (x, y, w, h) in objects:
            for _ in range(rng.integers(0, 3)):  # near-duplicates, shifted and sometimes of another class
                results.append({"image_id": image_id, "category_id": int(rng.choice([category_id, category_id,
                                                                                        rng.integers(1, 4)])),
                                "bbox": [x + rng.normal(0, 4), y + rng.normal(0, 4), w * rng.uniform(0.7, 1.3),
                                         h * rng.uniform(0.7, 1.3)], "score": float(rng.uniform())})
        for _ in range(rng.integers(0, 3)):  # background detections
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 4)),
                            "bbox": [float(v) for v in rng.uniform(0, 150, 2)] + [20.0, 20.0],
                            "score": float(rng.uniform())})
    return _truth(boxes_per_image), results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faster_coco_eval_gives_pycocotools_twelve_numbers(seed):
    truth, results = _random_case(seed)
    reference = evaluate_coco(truth, results)
    faster = evaluate_coco(truth, results, evaluator="faster_coco_eval")
    assert reference.metrics.keys() == faster.metrics.keys()
    np.testing.assert_allclose(list(faster.metrics.values()), list(reference.metrics.values()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(faster.precision, reference.precision, rtol=0, atol=1e-12)
    assert reference.metrics["AP"] > 0.05  # a case with something to score


def test_error_breakdown_separates_the_kinds_of_error():
    """cat: one exact hit, one loose box (IoU ~0.3), one on the dog, one on empty background, one cat missed."""
    truth = _truth([[(1, [10, 10, 40, 40]), (1, [100, 10, 40, 40]), (2, [10, 100, 40, 40]), (1, [100, 100, 40, 40])]])
    results = [{"image_id": 1, "category_id": 1, "bbox": bbox, "score": score} for bbox, score in [
        ([10, 10, 40, 40], 0.9),      # exact: a true positive at every IoU
        ([115, 25, 40, 40], 0.8),     # IoU 0.31 with the second cat: only a hit at IoU 0.1
        ([10, 100, 40, 40], 0.7),     # on the dog: a class confusion within the supercategory
        ([160, 160, 30, 30], 0.6),    # background
    ]]
    cat = error_breakdown(truth, results)["cat"]["areas"]
    for evaluator in ("pycocotools", "faster_coco_eval"):
        assert error_breakdown(truth, results, evaluator=evaluator)["cat"]["areas"] == pytest.approx(cat, abs=1e-12)
    # Recall points at 1/3 steps of 3 cats: C50 reaches 1/3 at precision 1; Loc 2/3 at precision 1; Sim forgives
    # the dog detection, so the background one is the only false positive left and comes after all hits; BG: 1 up
    # to 2/3; FN: 1.
    assert cat["C75"] == pytest.approx(34 / 101) and cat["C50"] == pytest.approx(34 / 101)
    assert cat["Loc"] == pytest.approx(67 / 101)
    assert cat["Sim"] == pytest.approx(cat["Loc"]) and cat["Oth"] == pytest.approx(cat["Sim"])
    assert cat["BG"] == pytest.approx(67 / 101) and cat["FN"] == 1.0
    assert [cat[kind] for kind in BREAKDOWN] == sorted(cat[kind] for kind in BREAKDOWN)


def test_confusion_matrix_and_per_image_errors():
    truth = _truth([[(1, [10, 10, 40, 40]), (2, [100, 10, 40, 40])], [(3, [10, 10, 50, 50])]])
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},  # cat as cat
        {"image_id": 1, "category_id": 1, "bbox": [100, 10, 40, 40], "score": 0.8},  # dog as cat
        {"image_id": 1, "category_id": 3, "bbox": [150, 150, 20, 20], "score": 0.7},  # car on background
        {"image_id": 2, "category_id": 3, "bbox": [10, 10, 50, 50], "score": 0.4},  # below the threshold
    ]
    confusion, per_image = match_detections(truth, results, iou_threshold=0.5, score_threshold=0.5)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = expected[1, 0] = expected[3, 2] = expected[2, 3] = 1  # cat-cat, dog-cat, bg-car, car missed
    np.testing.assert_array_equal(confusion, expected)
    assert per_image == {1: (2, 1), 2: (0, 1)}


def test_pr_curves_reach_tensorboard(tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from keras_retinanet.training.callbacks import write_pr_curves

    evaluation = evaluate_coco(*_random_case(3))
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        write_pr_curves(evaluation, step=7)
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert set(events.Tags()["tensors"]) == {f"pr_{iou}/{name}/pr_curves" for iou in ("iou50", "iou75")
                                             for name in ("cat", "dog", "car", "overall")}
    (event,) = events.Tensors("pr_iou50/dog/pr_curves")
    data = tf.make_ndarray(event.tensor_proto)  # rows: TP, FP, TN, FN, precision, recall
    assert event.step == 7 and data.shape == (6, 101)
    np.testing.assert_allclose(data[4][::-1], evaluation.precision[0][:, 1], atol=1e-6)
    np.testing.assert_allclose(data[5], np.linspace(1, 0, 101), atol=1e-6)
