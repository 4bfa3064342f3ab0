"""Reading annotation files safely: regular files only, text that must be UTF-8, numbers as annotations write them,
and image names that stay inside their images folder."""

import math
import os
import re
import stat

from keras_retinanet.config import INT32_MAX, shown
from keras_retinanet.data.records import DataError


def check_regular_file(path, what):
    """DataError naming `path` (the `what`, e.g. "class file") unless it is a regular file or a link to one: a
    folder is refused, and so are FIFOs and devices, which could keep a reader waiting forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path
        raise DataError(f"{path}: cannot read the {what} ({getattr(error, 'strerror', None) or error})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
        raise DataError(f"{path}: the {what} is {kind}, not a regular file")


def read_data_file(path, what, encoding="utf-8-sig"):
    """The text of the regular file `path` (the `what`, for messages), decoded with `encoding` (by default UTF-8
    without the byte-order mark spreadsheets write); its bytes when `encoding` is None.

    Raises:
        DataError: naming the file when it is missing, not a regular file (see `check_regular_file`), unreadable
            or not UTF-8 text.
    """
    check_regular_file(path, what)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read the {what} ({error.strerror or error})") from None
    if encoding is None:
        return data
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error}); save the file as UTF-8") from None


# A number as annotations write it: ASCII digits only (float() would also take "inf", "1_000", "٣").
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_number(text, name, where, integer=False):
    """The finite number that `text` writes in decimal ("12", "-3.5", "1e3"), or with `integer` the int it writes
    ("40", "40.0"; at most `INT32_MAX` in size, as TensorFlow holds image sizes); DataError naming `where`, the field
    `name` and the text (cut) otherwise."""
    text = text.strip()
    value = float(text) if _DECIMAL.fullmatch(text) else math.nan
    if not math.isfinite(value):
        raise DataError(f"{where}: {name} must be a finite decimal number, got {shown(text)}")
    if integer:
        if not value.is_integer() or abs(value) > INT32_MAX:
            raise DataError(f"{where}: {name} must be an integer of at most {INT32_MAX}, got {shown(text)}")
        return int(value)
    return value


def safe_image_path(images_dir, name, where, real_folders=None):
    """`images_dir/name`, or DataError when `name` is absolute, leaves `images_dir` (`../`) or is (or passes through)
    a symbolic link that leads out of it. `real_folders`: a dict that caches the real path of each folder, for
    checking many names (`os.path.realpath` of every name walked every folder of the path, a tenth of the time to
    read a COCO-sized file)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise DataError(f"{where}: the image file name must be a non-empty string without NUL, got {shown(name)}")
    normalized = os.path.normpath(name)
    if os.path.isabs(name) or normalized == os.pardir or normalized.startswith(os.pardir + os.sep):
        raise DataError(
            f"{where}: image path {shown(name)} must be a relative path inside the images folder {images_dir}"
        )
    path = os.path.join(images_dir, normalized)
    real_folders = {} if real_folders is None else real_folders
    real, root = _real_path(path, real_folders), _real_folder(images_dir, real_folders)
    if os.path.commonpath([real, root]) != root:
        raise DataError(
            f"{where}: image path {shown(name)} is a link to {real}, outside the images folder {images_dir}"
        )
    return path


def _real_folder(folder, real_folders):
    if folder not in real_folders:
        real_folders[folder] = os.path.realpath(folder)
    return real_folders[folder]


def _real_path(path, real_folders):
    """`os.path.realpath(path)`, its folder's from `real_folders`."""
    folder, base = os.path.split(path)
    if os.path.islink(path):
        return os.path.realpath(path)
    return os.path.normpath(os.path.join(_real_folder(folder, real_folders), base))


def images_folder(images_dir, source):
    """`images_dir` as a path; DataError naming the annotations `source` when it is not a folder."""
    images_dir = os.fspath(images_dir)
    if not os.path.isdir(images_dir):
        problem = "is not a folder" if os.path.exists(images_dir) else "does not exist"
        raise DataError(f"{source}: images directory {images_dir!r} {problem}")
    return images_dir
