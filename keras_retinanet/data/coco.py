"""Parser of COCO-format detection annotations (an instances JSON naming its image files); the dataset as COCO
ground truth.

`keras_retinanet.data.read_coco` reads such a file, with the folder of images, into a `DetectionDataset`."""

import json
import os
import re
import sys

import numpy as np

from keras_retinanet.config import cut, shown
from keras_retinanet.data.classes import MAX_CATEGORY_ID
from keras_retinanet.data.files import read_data_file
from keras_retinanet.data.records import AnnotatedImage, Annotations, DataError, Locations
from keras_retinanet.deprecation import moved_names

# JSON numbers: integers within int64 (image ids go into int64 arrays), floats of at most this many characters.
_INT64 = range(-(2**63), 2**63)
# 19 digits in a row: the shortest integer literal that may leave int64 (2^63 has 19 digits).
_LONG_DIGIT_RUN = re.compile(r"[0-9]{19}")


def parse_coco(annotations):
    """The `Annotations` of a COCO instances JSON; each image's name is its `file_name`.

    Category ids (COCO's 1..90 with gaps) map to contiguous labels in increasing id order. `iscrowd=1` boxes become
    ignore regions (a missing `iscrowd` counts as 0); bboxes [x, y, w, h] become `xyxy`; images without
    annotations are kept.

    Raises:
        DataError: naming the file and the offending image / annotation / category and value, for a missing,
            unreadable or non-regular file, invalid JSON (nested too deeply, or a number out of bounds: see
            `load_json`), a top-level section that is not a list, a missing key, an unknown image or category id,
            duplicate ids or category names, a bbox that is not 4 finite numbers.
    """
    source = os.fspath(annotations)
    content = _load_instances_json(source)
    category_ids, class_names = _read_categories(content["categories"], source)
    images = _read_images(content["images"], source)
    xyxy, image_positions, labels, crowd, annotation_ids = _read_annotations(
        content["annotations"], source, images, {category_id: label for label, category_id in enumerate(category_ids)}
    )

    def by_image(values, selected):
        return _group(values[selected], image_positions[selected], len(images))

    boxes, box_labels, box_ids = (by_image(values, ~crowd) for values in (xyxy, labels, annotation_ids))
    ignore_boxes, ignore_labels, ignore_ids = (by_image(values, crowd) for values in (xyxy, labels, annotation_ids))
    prefix = f"{source}: annotation id "
    annotated = [
        AnnotatedImage(
            image_id=image_id,
            path=image["file_name"],
            where=f"{source}: image id {image_id}",
            stated_size=(image["width"], image["height"]),
            boxes=boxes[position],
            labels=box_labels[position],
            box_locations=Locations(prefix, box_ids[position]),
            ignore_boxes=ignore_boxes[position],
            ignore_labels=ignore_labels[position],
            ignore_locations=Locations(prefix, ignore_ids[position]),
        )
        for position, (image_id, image) in enumerate(images.items())
    ]
    return Annotations(source, annotated, class_names, category_ids)


def _load_instances_json(source):
    """The top-level object of a COCO instances file, with its three lists present."""
    content = load_json(source, "COCO annotation file")
    if not isinstance(content, dict):
        raise DataError(f"{source}: expected a JSON object at the top level, got {type(content).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in content:
            raise DataError(f"{source}: missing top-level key {key!r}")
        if not isinstance(content[key], list):
            raise DataError(f"{source}: top-level {key!r} must be a list, got {shown(content[key])}")
    return content


def load_json(path, what):
    """The JSON value in file `path` (the `what`, for messages).

    Raises:
        DataError: naming the file, for what `read_data_file` refuses, invalid or empty JSON, nesting deeper than
            the parser goes (about `sys.getrecursionlimit()` levels), an integer outside int64 (naming its line and
            column). A float too large for float64 reads as infinite, which the readers refuse where it matters
            (boxes, sizes); floats are not checked while parsing, as that made COCO-scale files 25-45% slower to
            read.
    """
    text = read_data_file(path, what, encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path}: empty file, expected JSON")
    try:
        if not _LONG_DIGIT_RUN.search(text):  # no integer can leave int64: the parser's own, faster, integers
            return json.loads(text)
        return json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply (more than about {sys.getrecursionlimit()} levels of "
                        "arrays and objects)") from None
    except _NumberOutOfBounds as error:
        literal = error.args[0]
        start = re.search(rf"(?<![\w.+-]){re.escape(literal)}(?![\w.])", text).start()
        line = text.count("\n", 0, start) + 1
        column = start - text.rfind("\n", 0, start)
        raise DataError(f"{path}: line {line} column {column}: the number {cut(literal)} is out of bounds "
                        "(integers must fit in 64 bits)") from None


class _NumberOutOfBounds(ValueError):
    """A JSON number literal (`args[0]`) beyond the bounds of `load_json`."""


def _bounded_int(literal):
    if len(literal) > 20 or int(literal) not in _INT64:  # 20 characters: a sign and 19 digits, as int64 has
        raise _NumberOutOfBounds(literal)
    return int(literal)


def _read_annotations(annotations, source, images, label_of_category):
    """Checked annotations as arrays: xyxy boxes [A, 4], positions of their images in `images` [A], labels [A],
    crowd flags [A] and ids [A] (for messages; the position for an annotation without one). One pass in Python
    with cheap checks; the grouping by image runs vectorised after it."""
    position_of_image = {image_id: position for position, image_id in enumerate(images)}
    bboxes, image_positions, labels, crowd, annotation_ids = [], [], [], [], []
    first_with_id = {}
    for index, annotation in enumerate(annotations):
        if type(annotation) is not dict or not all(key in annotation for key in _ANNOTATION_KEYS):
            _require(annotation, _ANNOTATION_KEYS, f"{source}: annotation {_describe(annotation, index)}")
        if "id" in annotation:
            try:
                first = first_with_id.setdefault(annotation["id"], index)
            except TypeError:  # an unhashable id (a list, an object)
                raise _annotation_error(source, annotations, index,
                                        f"id must be a number, got {shown(annotation['id'])}") from None
            if first != index:
                raise _annotation_error(source, annotations, index, f"duplicate id: annotation #{first} has it too")
        image_id, category_id, bbox = annotation["image_id"], annotation["category_id"], annotation["bbox"]
        if type(image_id) is not int or image_id not in position_of_image:
            raise _annotation_error(source, annotations, index, f"image_id {shown(image_id)} is not in 'images'")
        if type(category_id) is not int or category_id not in label_of_category:
            raise _annotation_error(source, annotations, index,
                                    f"category_id {shown(category_id)} is not in 'categories'")
        if type(bbox) is not list or len(bbox) != 4 or not all(type(value) in (int, float) for value in bbox):
            raise _annotation_error(source, annotations, index,
                                    f"bbox must be 4 numbers [x, y, w, h], got {shown(bbox)}")
        iscrowd = annotation.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            raise _annotation_error(source, annotations, index, f"iscrowd must be 0 or 1, got {shown(iscrowd)}")
        bboxes.append(bbox)
        image_positions.append(position_of_image[image_id])
        labels.append(label_of_category[category_id])
        crowd.append(bool(iscrowd))
        annotation_ids.append(annotation["id"] if "id" in annotation else f"#{index} (no id)")

    xywh = np.array(bboxes, np.float64).reshape(-1, 4)
    with np.errstate(over="ignore"):  # x + w beyond float64: infinite, refused naming the annotation
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return (
        xyxy,
        np.array(image_positions, np.int64),
        np.array(labels, np.int32),
        np.array(crowd, bool),
        _object_array(annotation_ids),
    )


def _object_array(values):
    """`values` as a 1-D object array (np.array would make a 2-D array of ids that are lists)."""
    array = np.empty(len(values), object)
    array[:] = values
    return array


def to_coco_ground_truth(dataset, images_dir=None):
    """`dataset` (any format) as a COCO instances dict: boxes as annotations, ignore regions as `iscrowd` ones,
    `area` the box area. `file_name` is each image's path, relative to `images_dir` when given."""
    images, annotations = [], []
    for record in dataset.records:
        file_name = os.path.relpath(record.path, images_dir) if images_dir else record.path
        images.append({"id": int(record.image_id), "file_name": file_name, "height": record.height,
                       "width": record.width})
        category_ids = (dataset.label_to_category_id(record.labels), dataset.label_to_category_id(record.ignore_labels))
        for iscrowd, (boxes, categories) in enumerate(zip((record.boxes, record.ignore_boxes), category_ids)):
            for box, category_id in zip(boxes.astype(np.float64), categories):
                width, height = box[2] - box[0], box[3] - box[1]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": int(record.image_id), "category_id": int(category_id),
                    "bbox": [box[0], box[1], width, height], "area": width * height, "iscrowd": iscrowd,
                })
    categories = [{"id": int(i), "name": name} for i, name in zip(dataset.category_ids, dataset.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


_ANNOTATION_KEYS = ("image_id", "bbox", "category_id")


def _group(values, image_positions, num_images):
    """Splits `values` (one row per annotation) into a list of per-image arrays, in annotation order."""
    order = np.argsort(image_positions, kind="stable")
    ends = np.cumsum(np.bincount(image_positions, minlength=num_images))
    return np.split(values[order], ends[:-1])


def _annotation_error(source, annotations, index, problem):
    return DataError(f"{source}: annotation {_describe(annotations[index], index)}: {problem}")


def _read_categories(categories, source):
    """(category ids in increasing order, their names); ids and names each unique."""
    by_id, id_of_name = {}, {}
    for index, category in enumerate(categories):
        where = f"{source}: category {_describe(category, index)}"
        _require(category, ("id", "name"), where)
        category_id, name = category["id"], category["name"]
        if not _is_integer(category_id) or not 0 <= category_id <= MAX_CATEGORY_ID:
            raise DataError(f"{where}: id must be an integer in 0..{MAX_CATEGORY_ID}, got {shown(category_id)}")
        if category_id in by_id:
            raise DataError(f"{where}: duplicate category id {category_id}")
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: name must be a non-empty string, got {shown(name)}")
        if name in id_of_name:
            raise DataError(f"{where}: name {shown(name)} is also the name of category id {id_of_name[name]} (one "
                            "class would have two ids; give each category its own name)")
        by_id[category_id], id_of_name[name] = name, category_id
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
            raise DataError(f"{where}: id must be an integer, got {shown(image_id)}")
        if image_id in by_id:
            raise DataError(f"{where}: duplicate image id {image_id}")
        for key in ("height", "width"):
            if not _is_integer(image[key]) or image[key] <= 0:
                raise DataError(f"{where}: {key} must be a positive integer, got {shown(image[key])}")
        by_id[image_id] = image
    return by_id


def _require(entry, keys, where):
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected a JSON object, got {shown(entry)}")
    missing = [key for key in keys if key not in entry]
    if missing:
        raise DataError(f"{where}: missing key(s) {missing}")


def _describe(entry, index):
    """'id 7' when the entry has an id, else its position in the list."""
    if isinstance(entry, dict) and "id" in entry:
        return f"id {shown(entry['id'])}"
    return f"#{index} (no id)"


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


# `read_coco` moved to `keras_retinanet.data.reading` (one signature for every format).
__getattr__ = moved_names(__name__, {"read_coco": "keras_retinanet.data"})
