"""bin/benchmark's dataset_scale path, at a tiny size: the generated COCO-sized file and the rows timed on it."""

import json
import os

import pytest

from keras_retinanet.benchmark.dataset_scale import dataset_scale, write_coco_sized
from keras_retinanet.benchmark.suite import PATHS, BenchmarkOptions, benchmark_rows


def test_the_generated_file_is_read_as_written(tmp_path):
    from keras_retinanet.data import DataPolicy, read_dataset

    annotations, images = write_coco_sized(str(tmp_path), images=30, boxes=200, classes=5)
    with open(annotations) as file:
        written = json.load(file)
    assert len(written["images"]) == 30 and len(written["annotations"]) == 200 and len(written["categories"]) == 5
    assert len(os.listdir(images)) == 30
    dataset = read_dataset("coco", annotations, images, policy=DataPolicy(strict=True, verify_images=False))
    boxes = sum(len(record.boxes) + len(record.ignore_boxes) for record in dataset.records)
    assert len(dataset.records) == 30 and boxes == 200  # strict: nothing skipped or clipped


def test_the_case_reads_counts_and_fits_the_generated_file():
    result = dataset_scale(images=40, boxes=300, classes=3)
    assert result["images"] == 40 and 250 < result["boxes"] <= 300  # crowd regions are not boxes
    assert 0 <= result["coverage_before"] <= result["coverage_after"] <= 1
    assert all(result[key] > 0 for key in ("read_seconds", "statistics_seconds", "fit_seconds",
                                           "read_peak_rss_bytes"))


@pytest.mark.slow  # a fresh process that loads TensorFlow
def test_the_path_is_timed_only_when_named_and_gives_its_rows():
    assert "dataset_scale" not in BenchmarkOptions().paths and "dataset_scale" not in PATHS
    options = BenchmarkOptions(paths=["dataset_scale"], dataset_images=40, dataset_boxes=300, dataset_classes=3,
                               peers=[])
    rows = benchmark_rows(options, floor={})
    assert [row["path"].split(" (")[0] for row in rows] == [
        "read a generated COCO-format file", "dataset statistics", "anchor fitting",
        "peak memory"]
    assert all(isinstance(row["ours"], float) and row["ours"] > 0 for row in rows), rows
