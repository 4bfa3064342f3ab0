"""Reader for CSV annotations in fizyr/keras-retinanet's format: `path,x1,y1,x2,y2,class`, one box per line."""

import os

import numpy as np

from keras_retinanet.config import shown
from keras_retinanet.data.classes import NamedClasses, csv_rows
from keras_retinanet.data.policy import AnnotatedImage, DataError, DataPolicy, finish_dataset, images_folder
from keras_retinanet.data.policy import parse_number, read_data_file, safe_image_path

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


def read_csv(annotations, images_dir, classes=None, policy=DataPolicy()):
    """Reads a CSV annotation file into a `DetectionDataset`, applying the bad-input `policy`.

    Args:
        annotations: the CSV file. Without a header its columns are `path,x1,y1,x2,y2,class`; a first row made only
            of column names (`COLUMNS`, e.g. `filename,width,height,class,xmin,ymin,xmax,ymax`) is a header and
            sets the order; `width` and `height` columns are checked against the images. Coordinates are
            continuous pixels (floats allowed); a row `path,,,,,` lists an image without objects.
        images_dir: the folder the paths are relative to.
        classes: a class file (`name,id` lines) or None to take the sorted class names of the CSV, with ids 1, 2, ...
        policy: a `DataPolicy`.

    Image ids are 1, 2, ... in order of first appearance.

    Raises:
        DataError: naming the file, line and value, for a missing, unreadable or non-regular file, text that is not
            UTF-8 CSV, a wrong number of columns, a coordinate that is not a finite decimal number, a row with some
            coordinates empty, an unknown class name, contradicting sizes of one image; and every skip of the policy
            when it is strict.
    """
    annotations = os.fspath(annotations)
    images_dir = images_folder(images_dir, annotations)
    # Without the byte-order mark spreadsheet programs start the file with, which is not part of the first name.
    rows = csv_rows(read_data_file(annotations, "CSV annotation file"), annotations)
    if not rows:
        raise DataError(f"{annotations}: empty CSV file")
    columns = _header(rows[0][1], annotations)
    if columns is None:
        columns = {name: index for index, name in enumerate(_REQUIRED)}
    else:
        rows = rows[1:]
    entries = _image_entries(rows, columns, images_dir, annotations)

    named_classes = NamedClasses(classes, [name for entry in entries.values() for name in entry["names"]])
    images = []
    for image_id, (path, entry) in enumerate(entries.items(), start=1):
        labels = [named_classes.label(name, where) for name, where in zip(entry["names"], entry["locations"])]
        images.append(
            AnnotatedImage(
                image_id=image_id,
                path=path,
                where=entry["where"],
                stated_size=entry["size"],
                boxes=np.array(entry["boxes"], np.float64).reshape(-1, 4),
                labels=np.array(labels, np.int32),
                box_locations=entry["locations"],
            )
        )
    return finish_dataset(images, named_classes.class_names, named_classes.category_ids, annotations, policy)


def _image_entries(rows, columns, images_dir, annotations):
    """{image path: {"where", "size", "boxes", "names", "locations"}} of the numbered CSV `rows`, in order of first
    appearance."""
    entries = {}
    for number, row in rows:
        where = f"{annotations}: line {number}"
        if len(row) != len(columns):
            raise DataError(f"{where}: expected {len(columns)} columns, got {len(row)}: {shown(','.join(row))}")
        path = safe_image_path(images_dir, row[columns["path"]].strip(), where)
        entry = entries.setdefault(path, {"where": where, "size": None, "boxes": [], "names": [], "locations": []})
        if "width" in columns:
            size = tuple(_size(row[columns[key]], key, where) for key in ("width", "height"))
            if entry["size"] not in (None, size):
                raise DataError(f"{where}: image {path} was given size {entry['size']} before, now {size}")
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
