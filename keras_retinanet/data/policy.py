"""The bad-input policy `keras_retinanet.data.reading` applies to what every format's parser reads: what is an
error, what is skipped (with a warning and a count) and what is changed, so that no reader silently mislabels
anything.

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
import dataclasses
import logging

import numpy as np

from keras_retinanet.data.dataset import ImageRecord
from keras_retinanet.data.images import MAX_IMAGE_PIXELS, orient_boxes
from keras_retinanet.data.records import DataError
from keras_retinanet.deprecation import moved_names

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

# Warnings logged one by one per reason; the rest are only counted (the summary has the totals).
_LOGGED_PER_REASON = 10

# Names that lived here before the readers became parsers: their modules now, for `__getattr__`.
_MOVED = {
    **dict.fromkeys(("AnnotatedImage", "ImageInfo"), "records"),
    **dict.fromkeys(("DECODABLE_FORMATS", "ImageProblem", "inspect_image", "gif_decoded_size"), "images"),
    **dict.fromkeys(("check_regular_file", "read_data_file", "parse_number", "safe_image_path", "images_folder"),
                    "files"),
    **dict.fromkeys(("finish_dataset", "INSPECTION_THREADS"), "reading"),
}


__getattr__ = moved_names(__name__, {name: f"keras_retinanet.data.{module}" for name, module in _MOVED.items()})


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
    max_image_pixels: int = MAX_IMAGE_PIXELS

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
        return "\n".join(f"{self.source}: {count} x {meanings[reason]}"
                         for reason, count in sorted(self.counts.items()))


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
