"""read_coco, ImageRecord and DetectionDataset on small COCO files written by the tests."""

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.data import DataError, DataPolicy, DetectionDataset, ImageRecord, read_coco


def _coco_content():
    """Three images (the third without objects), category ids 1, 3, 90 listed out of order, one crowd box."""
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 2, "file_name": "sub/b.png", "height": 16, "width": 16},
            {"id": 3, "file_name": "empty.png", "height": 8, "width": 12},
        ],
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 1, "name": "person"},
            {"id": 3, "name": "car"},
        ],
        # Interleaved images: a record keeps its annotations in file order.
        "annotations": [
            {"id": 13, "image_id": 2, "category_id": 3, "bbox": [2.5, 3.5, 1.5, 2]},
            {"id": 11, "image_id": 1, "category_id": 90, "bbox": [5.5, 5, 10, 10.25], "iscrowd": 0},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [0, 0, 4, 4], "iscrowd": 1},
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0},
        ],
    }


def _write_coco(tmp_path, content):
    """Writes the JSON and a PNG of the stated size for every image; returns (json path, images dir)."""
    images_dir = tmp_path / "images"
    for image in content["images"]:
        path = images_dir / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((image["height"], image["width"], 3), np.uint8)).save(path)
    annotations_path = tmp_path / "instances.json"
    annotations_path.write_text(json.dumps(content))
    return annotations_path, images_dir


@pytest.fixture
def dataset(tmp_path):
    return read_coco(*_write_coco(tmp_path, _coco_content()))


def test_category_ids_map_to_sorted_contiguous_labels_and_back(dataset):
    assert dataset.category_ids == [1, 3, 90]
    assert dataset.class_names == ["person", "car", "toothbrush"]
    assert dataset.num_classes == 3
    assert dataset.label_map() == {1: "person", 3: "car", 90: "toothbrush"}
    np.testing.assert_array_equal(dataset.category_id_to_label([[90, 1], [3, 3]]), [[2, 0], [1, 1]])
    np.testing.assert_array_equal(dataset.label_to_category_id([[2, 0], [1, 1]]), [[90, 1], [3, 3]])
    np.testing.assert_array_equal(dataset.records[0].labels, [2, 0])


def test_unknown_category_id_or_label_is_named(dataset):
    with pytest.raises(ValueError, match=r"unknown category id\(s\) \[2, 91\]"):
        dataset.category_id_to_label([1, 2, 91])
    with pytest.raises(ValueError, match=r"unknown label\(s\) \[-1, 3\]"):
        dataset.label_to_category_id([0, 3, -1])


def test_boxes_become_xyxy_and_crowd_boxes_are_ignored(dataset):
    first, second, _ = dataset.records
    np.testing.assert_array_equal(first.boxes, [[5.5, 5, 15.5, 15.25], [1, 2, 4, 6]])
    assert first.boxes.dtype == np.float32 and first.labels.dtype == np.int32
    assert first.ignore_boxes.shape == (0, 4)
    # Annotation 13 has no iscrowd: it is an ordinary box; the crowd box 12 is only an ignore region.
    np.testing.assert_array_equal(second.boxes, [[2.5, 3.5, 4, 5.5]])
    np.testing.assert_array_equal(second.labels, [1])
    np.testing.assert_array_equal(second.ignore_boxes, [[0, 0, 4, 4]])


def test_images_without_annotations_are_kept_with_paths_and_sizes(dataset, tmp_path):
    assert [record.image_id for record in dataset.records] == [1, 2, 3]
    empty = dataset.records[2]
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,) and empty.ignore_boxes.shape == (0, 4)
    for record in dataset.records:
        assert record.path == os.path.join(tmp_path / "images", _file_name(record.image_id))
        with Image.open(record.path) as image:
            assert image.size == (record.width, record.height)
    assert dataset.source == str(tmp_path / "instances.json")


def _file_name(image_id):
    return {1: "a.png", 2: "sub/b.png", 3: "empty.png"}[image_id]


def test_record_arrays_are_read_only_copies_and_shapes_are_checked():
    boxes = np.array([[0, 0, 2, 2]], np.float64)
    record = ImageRecord(1, "x.png", 4, 4, boxes, [0], np.zeros((0, 4)))
    boxes[0, 0] = 1
    assert record.boxes[0, 0] == 0 and record.boxes.dtype == np.float32
    with pytest.raises(ValueError, match="read-only"):
        record.boxes[0, 0] = 5
    with pytest.raises(ValueError, match=r"labels must be \[1\]"):
        ImageRecord(1, "x.png", 4, 4, boxes, [0, 1], np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"boxes must be \[N, 4\]"):
        ImageRecord(1, "x.png", 4, 4, np.zeros((1, 3)), [0], np.zeros((0, 4)))


def test_dataset_rejects_duplicate_category_ids():
    with pytest.raises(ValueError, match="duplicate category ids"):
        DetectionDataset([], ["a", "b"], [4, 4], source="x.json")


def _set(section, index, key, value):
    def edit(content):
        content[section][index][key] = value

    return edit


def _delete(section, index, key):
    def edit(content):
        del content[section][index][key]

    return edit


# name: (edit of the valid content, fragments the error message must hold besides the file name)
BAD_INPUTS = {
    "no annotations": (lambda content: content.pop("annotations"), ["missing top-level key 'annotations'"]),
    "no categories": (lambda content: content.pop("categories"), ["missing top-level key 'categories'"]),
    "no image_id": (_delete("annotations", 1, "image_id"), ["annotation id 11", "'image_id'"]),
    "no bbox": (_delete("annotations", 1, "bbox"), ["annotation id 11", "'bbox'"]),
    "no category_id": (_delete("annotations", 1, "category_id"), ["annotation id 11", "'category_id'"]),
    "unknown image_id": (_set("annotations", 1, "image_id", 77), ["annotation id 11", "image_id 77"]),
    "unknown category_id": (_set("annotations", 1, "category_id", 2), ["annotation id 11", "category_id 2 "]),
    "bbox infinite": (
        _set("annotations", 1, "bbox", [1, 2, 3, float("inf")]),
        ["annotation id 11", "[1, 2, 4, inf]", "non-finite"],
    ),
    "bbox 3 numbers": (_set("annotations", 1, "bbox", [1, 2, 3]), ["annotation id 11", "[1, 2, 3]"]),
    "bbox string": (_set("annotations", 1, "bbox", [1, 2, "3", 4]), ["annotation id 11", "[1, 2, '3', 4]"]),
    "iscrowd 2": (_set("annotations", 1, "iscrowd", 2), ["annotation id 11", "iscrowd must be 0 or 1, got 2"]),
    "absolute file_name": (_set("images", 1, "file_name", "/etc/passwd"), ["image id 2", "'/etc/passwd'"]),
    "file_name ..": (_set("images", 1, "file_name", "../outside.png"), ["image id 2", "'../outside.png'"]),
    "file_name sub/../..": (
        _set("images", 1, "file_name", "sub/../../outside.png"),
        ["image id 2", "'sub/../../outside.png'"],
    ),
    "width 0": (_set("images", 1, "width", 0), ["image id 2", "width must be a positive integer, got 0"]),
    "no height": (_delete("images", 1, "height"), ["image id 2", "'height'"]),
    "duplicate image id": (_set("images", 2, "id", 1), ["image id 1", "duplicate image id 1"]),
    "duplicate annotation id": (_set("annotations", 3, "id", 13), ["annotation id 13", "duplicate id",
                                                                   "annotation #0 has it too"]),
}


@pytest.mark.parametrize("edit, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_naming_file_entry_and_value(tmp_path, edit, expected):
    annotations_path, images_dir = _write_coco(tmp_path, _coco_content())
    content = _coco_content()
    edit(content)
    annotations_path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as error:
        read_coco(annotations_path, images_dir)
    message = str(error.value)
    assert message.startswith(str(annotations_path))
    for fragment in expected:
        assert fragment in message


def test_annotation_without_id_is_named_by_position(tmp_path):
    content = _coco_content()
    del content["annotations"][2]["id"]
    content["annotations"][2]["bbox"] = [0, 0, 4]
    annotations_path, images_dir = _write_coco(tmp_path, content)
    with pytest.raises(ValueError, match=r"annotation #2 \(no id\): bbox .*got \[0, 0, 4\]"):
        read_coco(annotations_path, images_dir)


@pytest.mark.parametrize("bbox", [[1, 2, 0, 4], [1, 2, 3, -4]])
def test_degenerate_bbox_is_skipped_and_counted_or_an_error_when_strict(tmp_path, bbox):
    content = _coco_content()
    content["annotations"][1]["bbox"] = bbox  # annotation 11 of image 1
    annotations_path, images_dir = _write_coco(tmp_path, content)
    dataset = read_coco(annotations_path, images_dir)
    first = dataset.records[0]
    np.testing.assert_array_equal(first.boxes, [[1, 2, 4, 6]])  # annotation 10 only
    np.testing.assert_array_equal(first.labels, [0])
    assert dict(dataset.report.counts) == {"degenerate_box": 1}
    assert "1 x box with x2 <= x1 or y2 <= y1: box skipped" in dataset.report.summary()
    with pytest.raises(DataError, match=r"annotation id 11: box .* has x2 <= x1 or y2 <= y1.*data.strict"):
        read_coco(annotations_path, images_dir, policy=DataPolicy(strict=True))


def test_unparseable_json_names_the_file(tmp_path):
    annotations_path = tmp_path / "broken.json"
    annotations_path.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        read_coco(annotations_path, tmp_path)


def test_missing_images_directory_is_named(tmp_path):
    annotations_path, _ = _write_coco(tmp_path, _coco_content())
    with pytest.raises(ValueError, match="images directory .*nowhere.* does not exist"):
        read_coco(annotations_path, tmp_path / "nowhere")


def test_reading_40k_annotations_is_fast_and_groups_them_by_image(tmp_path):
    """40,000 annotations over 5,000 images: an image-by-annotation loop (2e8 steps) would take minutes."""
    rng = np.random.default_rng(0)
    num_images, num_annotations = 5000, 40000
    image_ids = rng.integers(1, num_images + 1, num_annotations)
    content = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 480, "width": 640} for i in range(1, num_images + 1)],
        "categories": [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}],
        "annotations": [
            {"id": i, "image_id": int(image_id), "category_id": 7, "bbox": [1.0, 2.0, 3.0, 4.0]}
            for i, image_id in enumerate(image_ids)
        ],
    }
    annotations_path = tmp_path / "large.json"
    annotations_path.write_text(json.dumps(content))
    Image.new("RGB", (640, 480)).save(tmp_path / "0.jpg")
    for i in range(1, num_images + 1):
        os.link(tmp_path / "0.jpg", tmp_path / f"{i}.jpg")
    start = time.perf_counter()
    dataset = read_coco(annotations_path, tmp_path)
    elapsed = time.perf_counter() - start
    assert sum(len(record.labels) for record in dataset.records) == num_annotations
    counts = np.bincount(image_ids, minlength=num_images + 1)[1:]
    np.testing.assert_array_equal([len(record.labels) for record in dataset.records], counts)
    assert elapsed < 10.0, f"read_coco took {elapsed:.1f} s"
