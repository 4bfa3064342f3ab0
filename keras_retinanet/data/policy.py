"""The bad-input policy every reader applies: what is an error, what is skipped (with a warning and a count) and
what is changed, so that no reader silently mislabels anything.

| case                                                    | outcome (`strict`: every skip or change is an error) |
| ------------------------------------------------------- | ---------------------------------------------------- |
| annotation or class file missing, a folder, FIFO, device| error naming the file (nothing is read or waited for) |
| annotation file unparsable, missing field, non-number   | error naming file, line / record and value           |
| number out of bounds (JSON integers: int64; inf boxes)  | error naming file, line / record and value           |
| class name not in the class file, class id out of range | error naming file, line / record and value           |
| one class name for two ids (COCO, TFRecord texts)       | error naming file, both ids and the name             |
| image path absolute or leaving the image folder         | error                                                |
| image file missing                                      | image skipped (`missing_image`)                      |
| truncated file, not an image, format TF cannot decode   | image skipped (`unreadable_image`)                   |
| more pixels than `max_image_pixels`                     | image skipped (`oversized_image`)                    |
| stated size differs from the file's (either orientation)| image skipped (`size_mismatch`)                      |
| box with x2 <= x1 or y2 <= y1                           | box skipped (`degenerate_box`)                       |
| box wholly outside the image                            | box skipped (`outside_box`)                          |
| box partly outside the image                            | box clipped to the image (`clipped_box`)             |
| EXIF orientation other than 1                           | pixels and boxes turned upright (`rotated_image`)    |
| image without boxes                                     | kept as a negative                                   |
| grayscale, RGBA, palette, 16-bit images                 | decoded to 8-bit RGB                                 |

Boxes are taken in the frame of the stored pixels; when the annotation states the upright size of a 90-degree
rotated image instead, its boxes are taken as upright already.
"""

import collections
import concurrent.futures
import dataclasses
import io
import logging
import math
import os
import re
import stat
import warnings

import numpy as np
from PIL import Image

from keras_retinanet.config import INT32_MAX, shown
from keras_retinanet.data.dataset import DetectionDataset, ImageRecord
from keras_retinanet.errors import InputError

logger = logging.getLogger("keras_retinanet.data")

# What `DataReport` counts: reason -> what happened, for warnings and the run summary.
SKIPS = {
    "missing_image": "image file missing: image skipped",
    "unreadable_image": "image file unreadable: image skipped",
    "oversized_image": "image larger than data.max_image_pixels: image skipped",
    "size_mismatch": "annotated image size differs from the file's: image skipped",
    "degenerate_box": "box with x2 <= x1 or y2 <= y1: box skipped",
    "outside_box": "box wholly outside its image: box skipped",
    "clipped_box": "box partly outside its image: clipped to the image",
}
NOTES = {"rotated_image": "EXIF orientation applied to pixels and boxes"}

# Formats `tf.io.decode_image` reads, as PIL names them.
# (MPO: multi-picture JPEGs from phone cameras, which decode as their first picture.)
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")
_EXIF_ORIENTATION = 0x0112
# Threads that check images while reading (PIL releases the GIL while it decodes).
INSPECTION_THREADS = min(8, (os.cpu_count() or 1) * 2)
# Warnings logged one by one per reason; the rest are only counted (the summary has the totals).
_LOGGED_PER_REASON = 10


class DataError(InputError, ValueError):
    """Input that cannot be used as annotated; the message names the file, the line or record, and the value."""


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


@dataclasses.dataclass(frozen=True)
class DataPolicy:
    """How readers treat bad input (the `data.strict`, `data.verify_images`, `data.max_image_pixels` settings).

    Attributes:
        strict: every skip or change is an error instead.
        verify_images: decode every image once while reading (finds truncated files before training starts; costs
            about as much as one epoch of decoding), else read only the image headers.
        max_image_pixels: images with more pixels are skipped (a 50-megapixel image is 600 MB as float32).
    """

    strict: bool = False
    verify_images: bool = True
    max_image_pixels: int = 50_000_000

    @classmethod
    def of(cls, data_config):
        """The policy a `keras_retinanet.config.DataConfig` sets."""
        return cls(data_config.strict, data_config.verify_images, data_config.max_image_pixels)


class DataReport:
    """Counts of what the policy skipped or changed while reading `source`; logs a warning for each.

    With `strict`, `skip` raises `DataError` instead.
    """

    def __init__(self, source, strict=False):
        self.source = source
        self.strict = strict
        self.counts = collections.Counter()

    def skip(self, reason, message):
        """Records a skip or change `reason` (a `SKIPS` key) described by `message` (file, line, value)."""
        if self.strict:
            raise DataError(f"{message} ({SKIPS[reason]}; data.strict is set)")
        self._count(reason, message, SKIPS[reason])

    def note(self, reason, message):
        """Records a change that is not a loss (a `NOTES` key): counted and logged, allowed under `strict`."""
        self._count(reason, message, NOTES[reason])

    def _count(self, reason, message, meaning):
        self.counts[reason] += 1
        if self.counts[reason] <= _LOGGED_PER_REASON:
            logger.warning("%s (%s)", message, meaning)

    def summary(self):
        """One line per reason with its count; empty when nothing was skipped or changed."""
        meanings = {**SKIPS, **NOTES}
        return "\n".join(f"{self.source}: {count} x {meanings[reason]}" for reason, count in sorted(self.counts.items()))


@dataclasses.dataclass
class AnnotatedImage:
    """One image as a reader parsed it, before the policy: boxes `xyxy` in the stored pixels' frame.

    `where` names the image's annotation (file, line or record) in messages; `box_locations` names each box's
    (and `ignore_locations` each ignore region's). `stated_size` is the annotation's (width, height), or None.
    """

    image_id: int
    path: str
    where: str
    stated_size: object
    boxes: np.ndarray
    labels: np.ndarray
    box_locations: list
    ignore_boxes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))
    ignore_labels: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    ignore_locations: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the image file says: stored size and EXIF orientation."""

    width: int
    height: int
    orientation: int


class ImageProblem(DataError):
    """An image the policy skips (an error where it is not skipped): `reason` is a `SKIPS` key."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def inspect_image(source, verify=True, max_pixels=DataPolicy.max_image_pixels, name=None):
    """`ImageInfo` of an image file path or encoded bytes; raises `ImageProblem` for the skips of the policy.

    With `verify`, decodes the pixels (finds truncated files); else reads only the header.
    """
    name = name or ("<image bytes>" if isinstance(source, bytes) else source)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise ImageProblem("missing_image", f"{name}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                width, height = image.size
                frames = 1
                if image.format == "GIF":  # TensorFlow decodes every frame, on a canvas as large as the largest
                    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as stream:
                        height, width, frames = gif_decoded_size(stream)
                if width * height * frames > max_pixels:
                    in_frames = f" in {frames} frames" if frames > 1 else ""
                    raise ImageProblem(
                        "oversized_image", f"{name}: {width} x {height} pixels{in_frames}, more than {max_pixels}"
                    )
                if image.format not in DECODABLE_FORMATS or getattr(image, "is_animated", False) \
                        and image.format == "WEBP":
                    raise ImageProblem(
                        "unreadable_image",
                        f"{name}: {'animated ' * (image.format == 'WEBP')}{image.format} images cannot be decoded "
                        f"by TensorFlow (use one of {', '.join(DECODABLE_FORMATS)}, WebP without animation)",
                    )
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
                if verify:
                    image.load()
    except ImageProblem:
        raise
    except Image.DecompressionBombError as error:
        raise ImageProblem("oversized_image", f"{name}: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageProblem("unreadable_image", f"{name}: not a readable image ({error})") from None
    if orientation not in range(1, 9):
        orientation = 1  # an invalid tag: viewers ignore it too, so the stored pixels are what annotators saw
    return ImageInfo(width, height, orientation)


def gif_decoded_size(stream):
    """(height, width, frames) that TensorFlow's GIF decoder allocates for the GIF in the binary `stream`: every
    frame, on a canvas as large as the logical screen and every frame's extent. Reads the block structure, not the
    pixels; `keras_retinanet.data.image_header.gif_size` does the same in the graph, for serving."""
    def read(count):
        data = stream.read(count)
        return data + bytes(count - len(data))  # past the end: zeros, which end the walk

    header = read(13)
    width, height = int.from_bytes(header[6:8], "little"), int.from_bytes(header[8:10], "little")
    frames = 0

    def skip_color_table(flags):
        if flags & 0x80:
            stream.seek(3 * 2 ** ((flags & 7) + 1), os.SEEK_CUR)

    skip_color_table(header[10])
    while True:
        block = read(1)[0]
        if block == 0x2C:  # image descriptor: left, top, width, height, flags; then the pixels
            descriptor = read(9)
            left, top, frame_width, frame_height = (int.from_bytes(descriptor[i:i + 2], "little") for i in (0, 2, 4, 6))
            width, height, frames = max(width, left + frame_width), max(height, top + frame_height), frames + 1
            skip_color_table(descriptor[8])
            read(1)  # LZW code size
        elif block == 0x21:  # extension: a label, then sub-blocks
            read(1)
        else:  # trailer or garbage
            return height, width, frames
        while length := read(1)[0]:
            stream.seek(length, os.SEEK_CUR)


def safe_image_path(images_dir, name, where):
    """`images_dir/name`, or DataError when `name` is absolute, leaves `images_dir` (`../`) or is (or passes through)
    a symbolic link that leads out of it."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise DataError(f"{where}: the image file name must be a non-empty string without NUL, got {shown(name)}")
    normalized = os.path.normpath(name)
    if os.path.isabs(name) or normalized == os.pardir or normalized.startswith(os.pardir + os.sep):
        raise DataError(
            f"{where}: image path {shown(name)} must be a relative path inside the images folder {images_dir}"
        )
    path = os.path.join(images_dir, normalized)
    real, root = os.path.realpath(path), os.path.realpath(images_dir)
    if os.path.commonpath([real, root]) != root:
        raise DataError(
            f"{where}: image path {shown(name)} is a link to {real}, outside the images folder {images_dir}"
        )
    return path


def images_folder(images_dir, source):
    """`images_dir` as a path; DataError naming the annotations `source` when it is not a folder."""
    images_dir = os.fspath(images_dir)
    if not os.path.isdir(images_dir):
        problem = "is not a folder" if os.path.exists(images_dir) else "does not exist"
        raise DataError(f"{source}: images directory {images_dir!r} {problem}")
    return images_dir


def finish_dataset(images, class_names, category_ids, source, policy):
    """The `DetectionDataset` of `AnnotatedImage`s after the policy: images checked (in parallel), boxes turned
    upright, cleaned and clipped. Skipped images are left out; its `report` counts every skip and change."""
    report = DataReport(source, policy.strict)
    with concurrent.futures.ThreadPoolExecutor(max_workers=INSPECTION_THREADS) as pool:
        infos = list(pool.map(lambda image: _inspect_or_problem(image, policy), images))
    records = []
    for image, info in zip(images, infos):
        if isinstance(info, ImageProblem):
            report.skip(info.reason, f"{image.where}: {info}")
            continue
        record = finish_record(image, info, report)
        if record is not None:
            records.append(record)
    return DetectionDataset(records, class_names, category_ids, source=source, report=report)


def _inspect_or_problem(image, policy):
    try:
        return inspect_image(image.path, policy.verify_images, policy.max_image_pixels)
    except ImageProblem as problem:
        return problem


def finish_record(image, info, report):
    """The `ImageRecord` of `image` (an `AnnotatedImage`) whose file `inspect_image` described as `info`, or None
    when the policy skips it."""
    raw_size = (info.width, info.height)
    upright_size = raw_size[::-1] if info.orientation >= 5 else raw_size
    boxes, ignore_boxes = _float_boxes(image.boxes), _float_boxes(image.ignore_boxes)
    stated = tuple(image.stated_size) if image.stated_size is not None else None
    if stated is not None and stated != raw_size and stated != upright_size:
        report.skip(
            "size_mismatch",
            f"{image.where}: annotated size {stated[0]} x {stated[1]} but {image.path} is "
            f"{info.width} x {info.height} (width x height)",
        )
        return None
    orientation = info.orientation
    if orientation != 1:
        if stated is None or stated == raw_size:  # boxes drawn on the stored pixels: turn them with the pixels
            boxes = orient_boxes(boxes, orientation, *raw_size)
            ignore_boxes = orient_boxes(ignore_boxes, orientation, *raw_size)
        report.note("rotated_image", f"{image.path}: EXIF orientation {orientation}")
    width, height = upright_size
    keep = _clean_boxes(boxes, width, height, image.box_locations, report)
    keep_ignored = _clean_boxes(ignore_boxes, width, height, image.ignore_locations, report)
    return ImageRecord(
        image_id=image.image_id,
        path=image.path,
        height=height,
        width=width,
        boxes=boxes[keep],
        labels=np.asarray(image.labels, np.int32).reshape(-1)[keep],
        ignore_boxes=ignore_boxes[keep_ignored],
        ignore_labels=np.asarray(image.ignore_labels, np.int32).reshape(-1)[keep_ignored],
        orientation=orientation,
    )


def _float_boxes(boxes):
    return np.array(boxes, np.float64).reshape(-1, 4)


def _clean_boxes(boxes, width, height, locations, report):
    """Keep-mask of `boxes`; clips in place the boxes partly outside the image. Non-finite values are errors."""
    x1, y1, x2, y2 = boxes.T
    finite = np.all(np.isfinite(boxes), axis=1)
    degenerate = finite & ((x2 <= x1) | (y2 <= y1))
    outside = finite & ~degenerate & ((x1 >= width) | (y1 >= height) | (x2 <= 0) | (y2 <= 0))
    crossing = finite & ~degenerate & ~outside & ((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height))
    for index in np.flatnonzero(~finite | degenerate | outside | crossing):
        where, value = locations[index], f"[{', '.join(f'{v:g}' for v in boxes[index])}]"
        if not finite[index]:
            raise DataError(f"{where}: box {value} has a non-finite coordinate")
        if degenerate[index]:
            report.skip("degenerate_box", f"{where}: box {value} has x2 <= x1 or y2 <= y1")
        elif outside[index]:
            report.skip("outside_box", f"{where}: box {value} lies outside the {width} x {height} image")
        else:
            report.skip("clipped_box", f"{where}: box {value} crosses the border of the {width} x {height} image")
            boxes[index] = np.clip(boxes[index], 0, [width, height, width, height])
    return ~(degenerate | outside)


def orient_boxes(boxes, orientation, width, height):
    """`xyxy` boxes on stored pixels of `width` x `height` -> on the upright image after EXIF `orientation`."""
    x1, y1, x2, y2 = np.asarray(boxes, np.float64).reshape(-1, 4).T
    corners = {
        1: (x1, y1, x2, y2),
        2: (width - x2, y1, width - x1, y2),  # mirrored left-right
        3: (width - x2, height - y2, width - x1, height - y1),  # turned 180 degrees
        4: (x1, height - y2, x2, height - y1),  # mirrored top-bottom
        5: (y1, x1, y2, x2),  # transposed
        6: (height - y2, x1, height - y1, x2),  # turned 90 degrees clockwise
        7: (height - y2, width - x2, height - y1, width - x1),  # transverse
        8: (y1, width - x2, y2, width - x1),  # turned 90 degrees counter-clockwise
    }[orientation]
    return np.stack(corners, axis=1)
