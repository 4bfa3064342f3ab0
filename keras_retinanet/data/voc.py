"""Parser of Pascal VOC annotations: one XML file per image (`Annotations/*.xml`) naming its image file.

`keras_retinanet.data.read_voc` reads them, with the folder of images, into a `DetectionDataset`."""

import os

import numpy as np
from defusedxml import DefusedXmlException, ElementTree

from keras_retinanet.data.classes import NamedClasses
from keras_retinanet.data.files import parse_number, read_data_file
from keras_retinanet.data.records import AnnotatedImage, Annotations, DataError
from keras_retinanet.deprecation import moved_names


def parse_voc(annotations, classes=None):
    """The `Annotations` of Pascal VOC XML files.

    Args:
        annotations: a folder of XML files (all `*.xml` in it, sorted), or an image-set list such as
            `VOC2007/ImageSets/Main/train.txt` (one image id per line, first column), whose XMLs are
            `VOC2007/Annotations/<id>.xml`.
        classes: a class file (one name per line, or `name,id` lines) or None to take the sorted class names found
            in the XMLs; without ids, class i gets category id i + 1.

    Each image's name is the XML's `<filename>`, relative to the images folder (`VOC2007/JPEGImages`).

    VOC coordinates are 1-based pixel indices, both ends inclusive: `xmin..xmax` becomes the continuous box
    `[xmin - 1, xmax]`. `difficult` objects become ignore regions (ignored in training; in COCO evaluation a
    detection on them is neither a true nor a false positive, as in VOC's own evaluation). Image ids are 1, 2, ...
    in file order.

    Raises:
        DataError: naming the XML file and the value, for a missing, unreadable or non-regular file, unparsable XML,
            a missing field, a number that is not a finite decimal (integers: within int32), an image-set list that
            lists no image, or a class name that is not in the class file.
    """
    annotations = os.fspath(annotations)
    parsed = [_parse(path) for path in _annotation_files(annotations)]
    named_classes = NamedClasses(classes, [name for entry in parsed for name, *_ in entry["objects"]])

    images = []
    for image_id, entry in enumerate(parsed, start=1):
        boxes = {False: [], True: []}
        labels = {False: [], True: []}
        locations = {False: [], True: []}
        for name, difficult, box, where in entry["objects"]:
            boxes[difficult].append(box)
            labels[difficult].append(named_classes.label(name, where))
            locations[difficult].append(where)
        images.append(
            AnnotatedImage(
                image_id=image_id,
                path=entry["path"],
                where=entry["where"],
                stated_size=entry["size"],
                boxes=np.array(boxes[False], np.float64).reshape(-1, 4),
                labels=np.array(labels[False], np.int32),
                box_locations=locations[False],
                ignore_boxes=np.array(boxes[True], np.float64).reshape(-1, 4),
                ignore_labels=np.array(labels[True], np.int32),
                ignore_locations=locations[True],
            )
        )
    return Annotations(annotations, images, named_classes.class_names, named_classes.category_ids)


def _annotation_files(annotations):
    if os.path.isdir(annotations):
        names = sorted(name for name in os.listdir(annotations) if name.endswith(".xml"))
        if not names:
            raise DataError(f"{annotations}: no .xml annotation files in this folder")
        return [os.path.join(annotations, name) for name in names]
    if not os.path.exists(annotations):
        raise DataError(f"{annotations}: no such annotation folder or image-set file")
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(annotations)))),
                          "Annotations")
    image_ids = [line.split()[0] for line in read_data_file(annotations, "image-set file").splitlines() if line.strip()]
    if not image_ids:
        raise DataError(f"{annotations}: the image-set file lists no images")
    files = [os.path.join(folder, f"{image_id}.xml") for image_id in image_ids]
    missing = [path for path in files if not os.path.isfile(path)]
    if missing:
        raise DataError(f"{annotations}: {len(missing)} listed image(s) have no annotation file, e.g. {missing[0]}")
    return files


def _parse(path):
    """{"path", "where", "size", "objects": [(name, difficult, [x1, y1, x2, y2], where)]} of one XML file."""
    try:
        root = ElementTree.fromstring(read_data_file(path, "VOC annotation file", encoding=None))
    except ElementTree.ParseError as error:
        raise DataError(f"{path}: not valid XML ({error})") from None
    except DefusedXmlException as error:  # entity declarations, external references: refused, nothing read
        raise DataError(f"{path}: XML with {type(error).__name__} is refused for safety ({error})") from None
    file_name = _text(root, "filename", path)
    size = root.find("size")
    stated_size = None
    if size is not None:
        stated_size = (_number(size, "width", path, integer=True), _number(size, "height", path, integer=True))
    objects = []
    for index, element in enumerate(root.findall("object"), start=1):
        where = f"{path}: object {index}"
        name = _text(element, "name", where)
        difficult = element.find("difficult")
        flagged = difficult is not None and (difficult.text or "").strip()
        flag = _number(element, "difficult", where, integer=True) if flagged else 0
        if flag not in (0, 1):
            raise DataError(f"{where}: <difficult> must be 0 or 1, got {flag}")
        bndbox = element.find("bndbox")
        if bndbox is None:
            raise DataError(f"{where}: missing <bndbox>")
        xmin, ymin, xmax, ymax = (_number(bndbox, key, where) for key in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((name, bool(flag), [xmin - 1, ymin - 1, xmax, ymax], where))
    return {"path": file_name, "where": path, "size": stated_size, "objects": objects}


def _text(element, key, where):
    child = element.find(key)
    if child is None or not (child.text or "").strip():
        raise DataError(f"{where}: missing <{key}>")
    return child.text.strip()


def _number(element, key, where, integer=False):
    return parse_number(_text(element, key, where), f"<{key}>", where, integer)


# `read_voc` moved to `keras_retinanet.data.reading` (one signature for every format).
__getattr__ = moved_names(__name__, {"read_voc": "keras_retinanet.data"})
