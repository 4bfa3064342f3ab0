"""Reader for COCO-format detection annotations (an instances JSON plus a folder of images)."""

import json
import os

import numpy as np

from keras_retinanet.data.records import DetectionDataset, ImageRecord


def read_coco(annotations_path, images_dir):
    """Reads a COCO instances JSON into a `DetectionDataset`.

    Category ids (COCO's 1..90 with gaps) map to contiguous labels in increasing id order. `iscrowd=1` boxes go to
    `ignore_boxes` (a missing `iscrowd` counts as 0); bboxes [x, y, w, h] become `xyxy` float32; images without
    annotations are kept. Image paths are `os.path.join(images_dir, file_name)`; the files are not opened here.

    Raises:
        ValueError: naming the file and the offending image / annotation / category and value, for invalid JSON,
            a missing key, an unknown image or category id, a bbox that is not 4 finite numbers with w, h > 0, or a
            `file_name` that is absolute or leaves `images_dir`.
    """
    source = os.fspath(annotations_path)
    images_dir = os.fspath(images_dir)
    if not os.path.isdir(images_dir):
        raise ValueError(f"{source}: images directory {images_dir!r} does not exist")
    try:
        with open(source, encoding="utf-8") as file:
            content = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source}: not valid JSON ({error})") from error
    if not isinstance(content, dict):
        raise ValueError(f"{source}: expected a JSON object at the top level, got {type(content).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in content:
            raise ValueError(f"{source}: missing top-level key {key!r}")

    category_ids, class_names = _read_categories(content["categories"], source)
    label_of_category = {category_id: label for label, category_id in enumerate(category_ids)}
    images = _read_images(content["images"], source)
    position_of_image = {image_id: position for position, image_id in enumerate(images)}

    # One pass in Python with cheap checks; the numeric checks and the grouping by image run vectorised after it.
    annotations = content["annotations"]
    bboxes, image_positions, labels, crowd = [], [], [], []
    for index, annotation in enumerate(annotations):
        if type(annotation) is not dict or not all(key in annotation for key in _ANNOTATION_KEYS):
            _require(annotation, _ANNOTATION_KEYS, f"{source}: annotation {_describe(annotation, index)}")
        image_id, category_id, bbox = annotation["image_id"], annotation["category_id"], annotation["bbox"]
        if type(image_id) is not int or image_id not in position_of_image:
            raise _annotation_error(source, annotations, index, f"image_id {image_id!r} is not in 'images'")
        if type(category_id) is not int or category_id not in label_of_category:
            raise _annotation_error(source, annotations, index, f"category_id {category_id!r} is not in 'categories'")
        if type(bbox) is not list or len(bbox) != 4 or not all(type(value) in (int, float) for value in bbox):
            raise _annotation_error(source, annotations, index, _bad_bbox(bbox))
        iscrowd = annotation.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            raise _annotation_error(source, annotations, index, f"iscrowd must be 0 or 1, got {iscrowd!r}")
        bboxes.append(bbox)
        image_positions.append(position_of_image[image_id])
        labels.append(label_of_category[category_id])
        crowd.append(bool(iscrowd))

    xywh = np.array(bboxes, np.float64).reshape(-1, 4)
    invalid = np.flatnonzero(~np.all(np.isfinite(xywh), axis=1) | (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0))
    if invalid.size:
        first = int(invalid[0])
        raise _annotation_error(source, annotations, first, _bad_bbox(bboxes[first]))
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    image_positions = np.array(image_positions, np.int64)
    labels = np.array(labels, np.int32)
    crowd = np.array(crowd, bool)
    boxes_by_image = _group(xyxy[~crowd], image_positions[~crowd], len(images))
    labels_by_image = _group(labels[~crowd], image_positions[~crowd], len(images))
    crowd_boxes_by_image = _group(xyxy[crowd], image_positions[crowd], len(images))

    records = [
        ImageRecord(
            image_id=image_id,
            path=os.path.join(images_dir, image["file_name"]),
            height=image["height"],
            width=image["width"],
            boxes=boxes_by_image[position],
            labels=labels_by_image[position],
            ignore_boxes=crowd_boxes_by_image[position],
        )
        for position, (image_id, image) in enumerate(images.items())
    ]
    return DetectionDataset(records, class_names, category_ids, source=source)


_ANNOTATION_KEYS = ("image_id", "bbox", "category_id")


def _group(values, image_positions, num_images):
    """Splits `values` (one row per annotation) into a list of per-image arrays, in annotation order."""
    order = np.argsort(image_positions, kind="stable")
    ends = np.cumsum(np.bincount(image_positions, minlength=num_images))
    return np.split(values[order], ends[:-1])


def _annotation_error(source, annotations, index, problem):
    return ValueError(f"{source}: annotation {_describe(annotations[index], index)}: {problem}")


def _bad_bbox(bbox):
    return f"bbox must be 4 finite numbers [x, y, w, h] with w > 0 and h > 0, got {bbox!r}"


def _read_categories(categories, source):
    """(category ids in increasing order, their names)."""
    by_id = {}
    for index, category in enumerate(categories):
        where = f"{source}: category {_describe(category, index)}"
        _require(category, ("id", "name"), where)
        category_id = category["id"]
        if not _is_integer(category_id):
            raise ValueError(f"{where}: id must be an integer, got {category_id!r}")
        if category_id in by_id:
            raise ValueError(f"{where}: duplicate category id {category_id}")
        by_id[category_id] = str(category["name"])
    category_ids = sorted(by_id)
    return category_ids, [by_id[category_id] for category_id in category_ids]


def _read_images(images, source):
    """{image id: image entry}, in file order, with checked ids, sizes and file names."""
    by_id = {}
    for index, image in enumerate(images):
        where = f"{source}: image {_describe(image, index)}"
        _require(image, ("id", "file_name", "height", "width"), where)
        image_id = image["id"]
        if not _is_integer(image_id):
            raise ValueError(f"{where}: id must be an integer, got {image_id!r}")
        if image_id in by_id:
            raise ValueError(f"{where}: duplicate image id {image_id}")
        for key in ("height", "width"):
            if not _is_integer(image[key]) or image[key] <= 0:
                raise ValueError(f"{where}: {key} must be a positive integer, got {image[key]!r}")
        file_name = image["file_name"]
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
        normalized = os.path.normpath(file_name)
        if os.path.isabs(file_name) or normalized == os.pardir or normalized.startswith(os.pardir + os.sep):
            raise ValueError(f"{where}: file_name {file_name!r} must be a relative path inside the images directory")
        by_id[image_id] = image
    return by_id


def _require(entry, keys, where):
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object, got {entry!r}")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")


def _describe(entry, index):
    """'id 7' when the entry has an id, else its position in the list."""
    if isinstance(entry, dict) and "id" in entry:
        return f"id {entry['id']!r}"
    return f"#{index} (no id)"


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)
