"""What the format parsers produce, before the bad-input policy, and the error they raise."""

import dataclasses

import numpy as np

from keras_retinanet.config import shown
from keras_retinanet.errors import InputError


class DataError(InputError, ValueError):
    """Input that cannot be used as annotated; the message names the file, the line or record, and the value."""


@dataclasses.dataclass
class Annotations:
    """One annotation file (or set of files) as a parser read it: its images and its classes.

    `images` are `AnnotatedImage`s whose `path` is the image's name relative to the images folder, as written in
    the annotations; `class_names` and `category_ids` are the dataset's, labels indexing them.
    """

    source: str
    images: list
    class_names: list
    category_ids: list


@dataclasses.dataclass
class AnnotatedImage:
    """One image as a reader parsed it, before the policy: boxes `xyxy` in the stored pixels' frame.

    `path` is the image file: as a parser gives it, the name the annotations write (relative to the images
    folder); once `keras_retinanet.data.reading` checked it, the path of the file. `where` names the image's
    annotation (file, line or record) in messages; `box_locations` names each box's (and `ignore_locations` each
    ignore region's). `stated_size` is the annotation's (width, height), or None.
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


class Locations:
    """Where each of a sequence of annotations comes from, `prefix` + `shown(id)`, made only when asked for: messages
    need a few of them, and making every one was a tenth of the time to read a COCO-sized file."""

    def __init__(self, prefix, ids):
        self.prefix, self.ids = prefix, ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return f"{self.prefix}{shown(self.ids[index])}"

    def __iter__(self):
        return (self[index] for index in range(len(self)))


@dataclasses.dataclass
class EncodedExample:
    """One TFRecord example as parsed: `image` has boxes normalised to 0..1 of the image's size, category ids for
    labels and `where` for a path; `encoded` is the image file's bytes, `shard` the index of its file."""

    image: AnnotatedImage
    encoded: bytes
    file_name: str
    source_id: str
    shard: int


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the image file says: stored size and EXIF orientation."""

    width: int
    height: int
    orientation: int
