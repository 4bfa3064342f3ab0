"""Parser of CSV annotations in fizyr/keras-retinanet's format: `path,x1,y1,x2,y2,class`, one box per line.

`keras_retinanet.data.read_csv` reads such a file into a `DetectionDataset`."""

import os

import numpy as np

from keras_retinanet.config import shown
from keras_retinanet.data.classes import NamedClasses, csv_rows
from keras_retinanet.data.files import parse_number, read_data_file
from keras_retinanet.data.records import AnnotatedImage, Annotations, DataError
from keras_retinanet.deprecation import moved_names

# Column names a header row may use (lower case), per column.
COLUMNS = {
    "path": ("path", "filename", "file_name", "image", "image_path"),
    "x1": ("x1", "xmin"),
    "y1": ("y1", "ymin"),
    "x2": ("x2", "xmax"),
    "y2": ("y2", "ymax"),
    "class": ("class", "class_name", "label"),
    "width": ("width",),
    "height": ("height",),
}
_REQUIRED = ("path", "x1", "y1", "x2", "y2", "class")


def parse_csv(annotations, classes=None):
    """The `Annotations` of a CSV annotation file.

    Args:
        annotations: the CSV file. Without a header its columns are `path,x1,y1,x2,y2,class`; a first row made only
            of column names (`COLUMNS`, e.g. `filename,width,height,class,xmin,ymin,xmax,ymax`) is a header and
            sets the order; `width` and `height` columns give the stated image sizes. Coordinates are continuous
            pixels (floats allowed); a row `path,,,,,` lists an image without objects.
        classes: a class file (`name,id` lines) or None to take the sorted class names of the CSV, with ids 1, 2, ...

    Image ids are 1, 2, ... in order of first appearance; rows naming one image (`a.jpg`, `./a.jpg`) share it.

    Raises:
        DataError: naming the file, line and value, for a missing, unreadable or non-regular file, text that is not
            UTF-8 CSV, a wrong number of columns, a coordinate that is not a finite decimal number, a row with some
            coordinates empty, an unknown class name, contradicting sizes of one image.
    """
    annotations = os.fspath(annotations)
    # Without the byte-order mark spreadsheet programs start the file with, which is not part of the first name.
    rows = csv_rows(read_data_file(annotations, "CSV annotation file"), annotations)
    if not rows:
        raise DataError(f"{annotations}: empty CSV file")
    columns = _header(rows[0][1], annotations)
    if columns is None:
        columns = {name: index for index, name in enumerate(_REQUIRED)}
    else:
        rows = rows[1:]
    entries = _image_entries(rows, columns, annotations)

    named_classes = NamedClasses(classes, [name for entry in entries.values() for name in entry["names"]])
    images = []
    for image_id, entry in enumerate(entries.values(), start=1):
        labels = [named_classes.label(name, where) for name, where in zip(entry["names"], entry["locations"])]
        images.append(
            AnnotatedImage(
                image_id=image_id,
                path=entry["name"],
                where=entry["where"],
                stated_size=entry["size"],
                boxes=np.array(entry["boxes"], np.float64).reshape(-1, 4),
                labels=np.array(labels, np.int32),
                box_locations=entry["locations"],
            )
        )
    return Annotations(annotations, images, named_classes.class_names, named_classes.category_ids)


def _image_entries(rows, columns, annotations):
    """{normalised image name: {"name", "where", "size", "boxes", "names", "locations"}} of the numbered CSV `rows`,
    in order of first appearance ("name": as first written)."""
    entries = {}
    for number, row in rows:
        where = f"{annotations}: line {number}"
        if len(row) != len(columns):
            raise DataError(f"{where}: expected {len(columns)} columns, got {len(row)}: {shown(','.join(row))}")
        name = row[columns["path"]].strip()
        key = os.path.normpath(name) if name else name  # rows writing one file differently (`./a.jpg`) share it
        entry = entries.setdefault(key, {"name": name, "where": where, "size": None, "boxes": [], "names": [],
                                         "locations": []})
        if "width" in columns:
            size = tuple(_size(row[columns[key]], key, where) for key in ("width", "height"))
            if entry["size"] not in (None, size):
                raise DataError(f"{where}: image {entry['name']} was given size {entry['size']} before, now {size}")
            entry["size"] = size
        fields = [row[columns[key]].strip() for key in ("x1", "y1", "x2", "y2", "class")]
        if not any(fields):
            continue  # an image without objects
        if not all(fields):
            raise DataError(
                f"{where}: a box needs x1, y1, x2, y2 and class (or all empty for no object), got {shown(row)}"
            )
        entry["boxes"].append([parse_number(value, name, where) for value, name in zip(fields[:4], _REQUIRED[1:5])])
        entry["names"].append(fields[4])
        entry["locations"].append(where)
    return entries


def _header(row, source):
    """{column: index} when `row` is a header (every field a known column name), else None."""
    names = [field.strip().lower() for field in row]
    column_of = {alias: column for column, aliases in COLUMNS.items() for alias in aliases}
    if not all(name in column_of for name in names):
        return None
    columns = {column_of[name]: index for index, name in enumerate(names)}
    missing = [column for column in _REQUIRED if column not in columns]
    if missing or len(columns) != len(names) or ("width" in columns) != ("height" in columns):
        raise DataError(
            f"{source}: line 1: a header needs each of {list(_REQUIRED)} once (width and height optional, together), "
            f"got {shown(row)}"
        )
    return columns


def _size(text, name, where):
    value = parse_number(text, name, where, integer=True)
    if value <= 0:
        raise DataError(f"{where}: {name} must be a positive integer, got {shown(text.strip())}")
    return value


# `read_csv` moved to `keras_retinanet.data.reading` (one signature for every format).
__getattr__ = moved_names(__name__, {"read_csv": "keras_retinanet.data"})
