"""Class files: which class names a dataset has and the id of each."""

import csv
import io
import json
import re

from keras_retinanet.config import INT32_MAX, shown
from keras_retinanet.data.files import read_data_file
from keras_retinanet.data.records import DataError

# The largest category id: labels hold category ids (as int32) while TFRecords are read.
MAX_CATEGORY_ID = INT32_MAX
# Tokens of protobuf text format: blanks and comments (skipped), punctuation, quoted strings, words and numbers.
_PBTXT_TOKEN = re.compile(r"""\s+|#[^\n]*|(?P<token>[{}:]|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[\w.+-]+)""")
_PBTXT_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
                  "'": "'", '"': '"', "?": "?"}
_PBTXT_MAX_DEPTH = 16


def read_class_file(path):
    """(category ids in increasing order, their names) from a class file.

    Formats: `name,id` lines (fizyr/keras-retinanet's CSV class file); one name per line (ids 1, 2, ... in line
    order); or a TF Object Detection API `label_map.pbtxt` (`item { id: 1 name: "cat" }`). Duplicate names or ids,
    negative, non-integer or larger than `MAX_CATEGORY_ID` ids, a missing, empty or unreadable file, and a label map
    that is not made of such items are errors naming the file and line.
    """
    path = str(path)
    text = read_data_file(path, "class file")  # without a spreadsheet's byte-order mark, which is not a name
    if path.endswith(".pbtxt"):
        entries = _pbtxt_entries(text, path)
    else:
        entries = []
        rows = csv_rows(text, path)
        for number, row in rows:
            where = f"{path}: line {number}"
            if len(row) == 1:
                entries.append((row[0].strip(), len(entries) + 1, where))
            elif len(row) == 2:
                entries.append((row[0].strip(), _class_id(row[1], where), where))
            else:
                raise DataError(f"{where}: expected 'name,id' or 'name', got {shown(','.join(row))}")
        if len({len(row) for _, row in rows}) > 1:
            raise DataError(f"{path}: mixes 'name,id' lines and lines with a name only")
    if not entries:
        raise DataError(f"{path}: no classes in the class file")
    names, ids = {}, {}
    for name, class_id, where in entries:
        if not name:
            raise DataError(f"{where}: empty class name")
        if name in names:
            raise DataError(f"{where}: class {shown(name)} is listed twice (also at {names[name]})")
        if class_id in ids:
            raise DataError(f"{where}: id {class_id} is given twice (also at {ids[class_id]})")
        names[name], ids[class_id] = where, where
    ordered = sorted((class_id, name) for name, class_id, _ in entries)
    return [class_id for class_id, _ in ordered], [name for _, name in ordered]


def csv_rows(text, path):
    """(line number, fields) of each non-empty row of the CSV `text` of file `path`; DataError naming the line of
    text that is not CSV (strictly: a quote left open is not read up to the end of the file)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return [(reader.line_num, row) for row in reader if row]
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({error})") from None


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
                f"{where}: class {shown(name)} is not in the class file {self.class_file} "
                f"(classes: {shown(self.class_names)})"
            )
        return self._labels[name]


def _class_id(text, where):
    text = text.strip()
    if not re.fullmatch("[0-9]{1,10}", text) or int(text) > MAX_CATEGORY_ID:
        raise DataError(f"{where}: class id must be an integer in 0..{MAX_CATEGORY_ID}, got {shown(text)}")
    return int(text)


def _pbtxt_entries(text, path):
    """(name, id, where) of each `item { id: 1 name: "cat" }` of a label map in protobuf text format. Other fields
    (`display_name`, which names an item without `name`; `keypoints { ... }`, ...) are read and left out; anything
    but items is an error naming its line."""
    tokens = _pbtxt_tokens(text, path)
    entries = []
    while tokens:
        token, line = tokens.pop()
        where = f"{path}: line {line}"
        if token != "item":
            raise DataError(f"{where}: expected 'item {{ ... }}', got {shown(token)}")
        fields = _pbtxt_message(tokens, path, line)
        if "id" not in fields or "name" not in fields and "display_name" not in fields:
            raise DataError(f"{where}: an item needs an id and a name")
        name, name_line = fields["name"] if "name" in fields else fields["display_name"]
        class_id, id_line = fields["id"]
        entries.append(
            (_pbtxt_string(name, f"{path}: line {name_line}"), _class_id(class_id, f"{path}: line {id_line}"), where)
        )
    return entries


def _pbtxt_tokens(text, path):
    """The tokens of protobuf text `text` with their line numbers, last first (to `pop` in order)."""
    tokens, position = [], 0
    while position < len(text):
        match = _PBTXT_TOKEN.match(text, position)
        line = text.count("\n", 0, position) + 1
        if match is None:
            raise DataError(f"{path}: line {line}: not protobuf text format at {shown(text[position:position + 20])}")
        if match["token"]:
            tokens.append((match["token"], line))
        position = match.end()
    return tokens[::-1]


def _pbtxt_message(tokens, path, line, depth=0):
    """The scalar fields {name: (token, line)} of the `{ ... }` message next in `tokens` (after an optional ':');
    nested messages (up to `_PBTXT_MAX_DEPTH` deep) are read and left out."""
    if depth > _PBTXT_MAX_DEPTH:
        raise DataError(f"{path}: line {line}: messages nested more than {_PBTXT_MAX_DEPTH} deep")
    if tokens and tokens[-1][0] == ":":
        tokens.pop()
    if not tokens or tokens.pop()[0] != "{":
        raise DataError(f"{path}: line {line}: expected '{{' to open the message")
    fields = {}
    while True:
        if not tokens:
            raise DataError(f"{path}: line {line}: the message opened here is not closed with '}}'")
        name, name_line = tokens.pop()
        if name == "}":
            return fields
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise DataError(f"{path}: line {name_line}: expected a field name, got {shown(name)}")
        upcoming = [token for token, _ in reversed(tokens[-2:])]
        if upcoming[:1] == ["{"] or upcoming == [":", "{"]:
            _pbtxt_message(tokens, path, name_line, depth + 1)
            continue
        if len(upcoming) < 2 or upcoming[0] != ":" or upcoming[1] in ("{", "}", ":"):
            raise DataError(f"{path}: line {name_line}: expected '{name}: value'")
        if name in fields:
            raise DataError(f"{path}: line {name_line}: field {name!r} is given twice in one message")
        tokens.pop()
        fields[name] = tokens.pop()


def _pbtxt_string(token, where):
    """The text of a quoted protobuf string token, its escapes (\\n, \\", \\u00e9, ...) decoded."""
    if token[:1] not in "\"'" or len(token) < 2:
        raise DataError(f"{where}: a name must be a quoted string, got {shown(token)}")

    def unescape(match):
        escaped = match.group(1)
        if escaped in _PBTXT_ESCAPES:
            return _PBTXT_ESCAPES[escaped]
        if re.fullmatch("u[0-9A-Fa-f]{4}", escaped):
            return chr(int(escaped[1:], 16))
        raise DataError(f"{where}: unknown escape \\{escaped[:1]} in the string {shown(token)}")

    return re.sub(r"\\(u[0-9A-Fa-f]{4}|.)", unescape, token[1:-1])


def write_label_map(path, category_ids, class_names):
    """Writes a TF Object Detection API `label_map.pbtxt`."""
    with open(path, "w", encoding="utf-8") as file:
        for class_id, name in zip(category_ids, class_names):
            quoted = json.dumps(name, ensure_ascii=False)  # a valid protobuf text string for printable names
            file.write(f"item {{\n  id: {int(class_id)}\n  name: {quoted}\n  display_name: {quoted}\n}}\n")
