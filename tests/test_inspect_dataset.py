"""Dataset statistics (`keras_retinanet.data.statistics`) and `bin/inspect_dataset` on the vendored raccoon data."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.boxes.iou import pairwise_iou
from keras_retinanet.config import load_config
from keras_retinanet.data import DataPolicy, DetectionDataset, ImageRecord, read_dataset
from keras_retinanet.data import statistics
from keras_retinanet.data.pipeline import resize_image
from keras_retinanet.data.statistics import InputGeometry, best_anchors, box_iou, dataset_statistics, size_bin_names
from keras_retinanet.models.factory import build_anchor_generator, build_matcher
from test_progress import final_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RACCOON = os.path.join(ROOT, "tests", "data", "raccoon")


def record(image_id, size, boxes, labels, ignore_boxes=None, ignore_labels=None):
    return ImageRecord(image_id, f"image-{image_id}.jpg", size, size, np.reshape(boxes, (-1, 4)), labels,
                       ignore_boxes, ignore_labels)


def geometry_of(config):
    return InputGeometry(config.data, build_anchor_generator(config.model.anchors), build_matcher(config.model.matcher))


def test_statistics_are_exact_on_a_hand_made_dataset():
    # Defaults: shorter side 800, paper anchors (level 3: stride 8, size 32; level 7: stride 128, size 512).
    dataset = DetectionDataset(
        [
            # The level-3 anchor of ratio 1, scale 1 at cell (10, 10): IoU 1; and a 10:1 box no anchor covers.
            record(1, 800, [[68, 68, 100, 100], [100, 100, 420, 132]], [0, 1]),
            # A 10 px box, below the smallest anchor; plus an ignore region of class 1.
            record(2, 800, [[0, 0, 10, 10]], [0], ignore_boxes=[[50, 50, 90, 90]], ignore_labels=[1]),
            record(3, 800, np.zeros((0, 4)), []),  # a negative
            # Resized by 0.5 to the level-7 anchor of ratio 1, scale 1 at cell (2, 2): [64, 64, 576, 576].
            record(4, 1600, [[128, 128, 1152, 1152]], [0]),
        ],
        ["cat", "dog"], [1, 2],
    )
    stats = dataset_statistics(dataset, geometry_of(load_config()))

    assert (stats.num_images, stats.num_negatives, stats.num_boxes) == (4, 1, 4)
    np.testing.assert_array_equal(stats.boxes_per_class, [3, 1])
    np.testing.assert_array_equal(stats.ignore_per_class, [0, 1])
    np.testing.assert_allclose(stats.box_sizes, [32, np.sqrt(320 * 32), 10, 512], rtol=1e-6)
    assert size_bin_names() == ["<16", "16-32", "32-64", "64-128", "128-256", "256-512", ">=512"]
    np.testing.assert_array_equal(stats.size_histogram(), [1, 0, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(stats.coco_size_counts(), [1, 1, 2])  # 10^2 small, 32^2 medium (COCO: a < 32^2)
    np.testing.assert_allclose(stats.aspect_ratios, [1, 0.1, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(stats.best_iou[[0, 3]], 1.0, rtol=1e-6)
    assert stats.best_iou[1] < 0.4 and stats.best_iou[2] < 0.4
    assert stats.coverage(0.5) == stats.coverage(0.4) == 0.5
    report = statistics.format_statistics(stats)
    assert "4 images (1 negatives" in report and "4 boxes, 1 ignore regions" in report
    assert "best anchor IoU >= 0.5 for 50.0% of boxes (2/4), >= 0.4 for 50.0%" in report


def test_no_boxes_reports_counts_only():
    dataset = DetectionDataset([record(1, 64, np.zeros((0, 4)), [])], ["cat"], [1])
    stats = dataset_statistics(dataset, geometry_of(load_config()))
    assert stats.num_boxes == 0 and np.isnan(stats.coverage(0.5))
    assert "1 images (1 negatives: images without boxes), 0 boxes" in statistics.format_statistics(stats)


@pytest.mark.parametrize("resize_rule", ["detectron", "torchvision"])
def test_geometry_resizes_as_the_pipeline(resize_rule):
    geometry = geometry_of(load_config(overrides=[f"data.resize_rule={resize_rule}", "data.size_divisor=32"]))
    for height, width in [(960, 720), (417, 650), (183, 275), (100, 3000), (801, 799)]:
        resized, _ = resize_image(tf.zeros((height, width, 1)), 800, 1333, resize_rule)
        assert geometry.resized_size(height, width) == tuple(resized.shape[:2])
    # 960 * 800 / 720 = 1066.67: rounded, or floored as torchvision does.
    assert geometry.resized_size(960, 720) == ({"detectron": 1067, "torchvision": 1066}[resize_rule], 800)
    assert geometry.padded_size(1066, 800) == (1088, 800)


def test_iou_matches_pairwise_iou_and_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (2, 50, 2, 2))
    boxes, anchors = (np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1) for c in corners)
    expected = pairwise_iou(tf.constant(boxes, tf.float32), tf.constant(anchors, tf.float32)).numpy()
    np.testing.assert_allclose(box_iou(boxes, anchors), expected, atol=1e-6)
    monkeypatch.setattr(statistics, "_IOU_CHUNK", 120)  # two boxes per chunk
    best_iou, best_index = best_anchors(boxes, anchors)
    np.testing.assert_allclose(best_iou, expected.max(axis=1), atol=1e-6)
    np.testing.assert_array_equal(best_index, expected.argmax(axis=1))


@pytest.mark.parametrize("format, annotations", [("voc", "annotations"), ("csv", "labels.csv")])
def test_vendored_raccoon_data_reads_cleanly(format, annotations):
    dataset = read_dataset(format, os.path.join(RACCOON, annotations), os.path.join(RACCOON, "images"),
                           os.path.join(RACCOON, "classes.csv"), DataPolicy(strict=True))
    assert len(dataset.records) == 5 and sum(len(r.boxes) for r in dataset.records) == 6
    assert dataset.class_names == ["raccoon"] and dataset.report.summary() == ""


def run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "inspect_dataset"), *args], capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": ROOT},
    )


def test_cli_prints_statistics_and_draws(tmp_path):
    config = tmp_path / "raccoon.yaml"
    config.write_text(f"data:\n  train: {{format: voc, annotations: {RACCOON}/annotations, "
                      f"images: {RACCOON}/images}}\n  min_size: 400\n")
    result = run_cli(f"--config={config}", "--set=data.max_size=666", "--draw=5", f"--output_dir={tmp_path}/out")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "5 images (0 negatives: images without boxes), 6 boxes, 0 ignore regions" in result.stdout
    assert "shorter side 400 (longer <= 666), padded to multiples of 128" in result.stdout
    assert "anchor coverage: best anchor IoU >= 0.5" in result.stdout
    assert "bad-input policy: nothing skipped or changed" in result.stdout
    assert [line[:2] for line in final_lines(result.stdout)] == [(5, 5), (5, 5)]  # statistics, then drawing
    drawn = sorted(os.listdir(tmp_path / "out"))
    assert drawn == ["0000_raccoon-1.png", "0001_raccoon-105.png", "0002_raccoon-150.png", "0003_raccoon-151.png",
                     "0004_raccoon-63.png"]
    # raccoon-1 (650 x 417) as the model sees it: resized to 624 x 400, padded to 640 x 512.
    assert Image.open(tmp_path / "out" / drawn[0]).size == (640, 512)


def test_cli_strict_names_the_degenerate_box(tmp_path):
    with open(os.path.join(RACCOON, "annotations", "raccoon-1.xml"), encoding="utf-8") as file:
        xml = file.read()
    assert "<xmax>522</xmax>" in xml
    (tmp_path / "raccoon-1.xml").write_text(xml.replace("<xmax>522</xmax>", "<xmax>50</xmax>"))
    result = run_cli("--format=voc", f"--annotations={tmp_path}", f"--images={RACCOON}/images", "--strict")
    assert result.returncode != 0
    assert f"{tmp_path}/raccoon-1.xml: object 1: box [80, 87, 50, 408]" in result.stderr, result.stderr[-4000:]
