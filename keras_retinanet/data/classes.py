"""Class files: which class names a dataset has and the id of each."""

import csv
import json
import re

from keras_retinanet.data.policy import DataError

_PBTXT_ITEM = re.compile(r"item\s*\{([^}]*)\}")
_PBTXT_FIELD = re.compile(r"""\b(id|name|display_name)\s*:\s*(?:"([^"]*)"|'([^']*)'|(-?\d+))""")


def read_class_file(path):
    """(category ids in increasing order, their names) from a class file.

    Formats: `name,id` lines (fizyr/keras-retinanet's CSV class file); one name per line (ids 1, 2, ... in line
    order); or a TF Object Detection API `label_map.pbtxt` (`item { id: 1 name: "cat" }`). Duplicate names or ids,
    negative or non-integer ids and empty files are errors naming the line.
    """
    try:
        with open(path, encoding="utf-8-sig") as file:  # -sig: a spreadsheet's byte-order mark is not a name
            text = file.read()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error}); save the file as UTF-8") from None
    if path.endswith(".pbtxt"):
        entries = _pbtxt_entries(text, path)
    else:
        entries = []
        rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), start=1) if row]
        for number, row in rows:
            where = f"{path}: line {number}"
            if len(row) == 1:
                entries.append((row[0].strip(), len(entries) + 1, where))
            elif len(row) == 2:
                entries.append((row[0].strip(), _class_id(row[1], where), where))
            else:
                raise DataError(f"{where}: expected 'name,id' or 'name', got {','.join(row)!r}")
        if len({len(row) for _, row in rows}) > 1:
            raise DataError(f"{path}: mixes 'name,id' lines and lines with a name only")
    if not entries:
        raise DataError(f"{path}: no classes in the class file")
    names, ids = {}, {}
    for name, class_id, where in entries:
        if not name:
            raise DataError(f"{where}: empty class name")
        if name in names:
            raise DataError(f"{where}: class {name!r} is listed twice (also at {names[name]})")
        if class_id in ids:
            raise DataError(f"{where}: id {class_id} is given twice (also at {ids[class_id]})")
        names[name], ids[class_id] = where, where
    ordered = sorted((class_id, name) for name, class_id, _ in entries)
    return [class_id for class_id, _ in ordered], [name for _, name in ordered]


class NamedClasses:
    """The classes of a dataset whose annotations name them (VOC, CSV): those of `class_file`, or else the sorted
    `found_names` with category ids 1, 2, ..."""

    def __init__(self, class_file, found_names):
        self.class_file = class_file
        if class_file:
            self.category_ids, self.class_names = read_class_file(class_file)
        else:
            self.class_names = sorted(set(found_names))
            self.category_ids = list(range(1, len(self.class_names) + 1))
        self._labels = {name: label for label, name in enumerate(self.class_names)}

    def label(self, name, where):
        """The contiguous label of class `name`; DataError naming `where` when the class file lacks it."""
        if name not in self._labels:
            raise DataError(
                f"{where}: class {name!r} is not in the class file {self.class_file} (classes: {self.class_names})"
            )
        return self._labels[name]


def _class_id(text, where):
    text = text.strip()
    if not text.isdigit():
        raise DataError(f"{where}: class id must be a non-negative integer, got {text!r}")
    return int(text)


def _pbtxt_entries(text, path):
    entries = []
    for item in _PBTXT_ITEM.finditer(text):
        line = text.count("\n", 0, item.start()) + 1
        fields = {key: quoted or single or number for key, quoted, single, number in _PBTXT_FIELD.findall(item.group(1))}
        where = f"{path}: item at line {line}"
        if "id" not in fields or "name" not in fields and "display_name" not in fields:
            raise DataError(f"{where}: an item needs an id and a name")
        entries.append((fields.get("name") or fields["display_name"], _class_id(fields["id"], where), where))
    return entries


def write_label_map(path, category_ids, class_names):
    """Writes a TF Object Detection API `label_map.pbtxt`."""
    with open(path, "w", encoding="utf-8") as file:
        for class_id, name in zip(category_ids, class_names):
            quoted = json.dumps(name, ensure_ascii=False)  # a valid protobuf text string for printable names
            file.write(f"item {{\n  id: {int(class_id)}\n  name: {quoted}\n  display_name: {quoted}\n}}\n")
