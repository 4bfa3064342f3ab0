"""The in-memory form of a detection dataset that every reader produces and the input pipeline consumes."""

import dataclasses

import numpy as np

from keras_retinanet.data.records import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class ImageRecord:
    """One image and its ground truth.

    The arrays are copied, cast (boxes float32, labels int32) and made read-only, so a record stays what its reader
    made of it: augmentation must work on copies. Records compare by identity (`eq=False`), as arrays have no
    single truth value.

    Attributes:
        image_id: the dataset's own image id (COCO `id`), the key evaluation results refer to.
        path: the image file, absolute or relative to the working directory.
        height, width: image size in pixels, as the annotations state it.
        boxes: [M, 4] float32 `xyxy` pixels of the upright image (after `orientation`).
        labels: [M] int32 contiguous class indices 0..K-1.
        ignore_boxes: [N, 4] float32 `xyxy` regions ignored in training (COCO crowd boxes, VOC `difficult`
            objects) and by evaluation; may be empty.
        ignore_labels: [N] int32 class of each ignore region (evaluation ignores detections of that class there).
        orientation: the EXIF orientation (1-8) that turns the stored pixels upright; `height`, `width` and the
            boxes already describe the upright image, the pipeline turns the pixels when it decodes them.
    """

    image_id: int
    path: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore_boxes: np.ndarray = None
    ignore_labels: np.ndarray = None
    orientation: int = 1

    def __post_init__(self):
        where = f"image {self.image_id} ({self.path})"
        boxes = _read_only(self.boxes, np.float32)
        labels = _read_only(self.labels, np.int32)
        ignore_boxes = _read_only(np.zeros((0, 4)) if self.ignore_boxes is None else self.ignore_boxes, np.float32)
        ignore_labels = _read_only(np.zeros(0) if self.ignore_labels is None else self.ignore_labels, np.int32)
        for name, array in (("boxes", boxes), ("ignore_boxes", ignore_boxes)):
            if array.ndim != 2 or array.shape[1] != 4:
                raise ValueError(f"{where}: {name} must be [N, 4], got shape {array.shape}")
        for name, array, count in (("labels", labels, len(boxes)), ("ignore_labels", ignore_labels, len(ignore_boxes))):
            if array.shape != (count,):
                raise ValueError(f"{where}: {name} must be [{count}] (one per box), got shape {array.shape}")
            if array.size and array.min() < 0:
                raise ValueError(f"{where}: negative label {array.min()} in {name}")
        if self.orientation not in range(1, 9):
            raise ValueError(f"{where}: EXIF orientation must be 1..8, got {self.orientation!r}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "ignore_boxes", ignore_boxes)
        object.__setattr__(self, "ignore_labels", ignore_labels)


def _read_only(values, dtype):
    array = np.array(values, dtype=dtype)
    array.setflags(write=False)
    return array


@dataclasses.dataclass
class DetectionDataset:
    """Records plus the class mapping between contiguous labels and the dataset's own category ids.

    Attributes:
        records: one `ImageRecord` per image, images without objects included.
        class_names: name of class i.
        category_ids: the dataset's own id of class i (e.g. COCO's 1..90 with gaps); unique.
        source: where the dataset was read from (a path), for error messages.
        image_source: None when each record's `path` is its image file; else an object whose `encoded_images()`
            returns a `tf.data.Dataset` of the encoded images, one per record in order (TFRecord datasets).
        report: what the reader skipped or changed (a `DataReport`), for the run summary.
    """

    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int]
    source: str = ""
    image_source: object = None
    report: object = None

    def __post_init__(self):
        if len(self.class_names) != len(self.category_ids):
            raise ValueError(
                f"{self.source}: {len(self.class_names)} class names but {len(self.category_ids)} category ids"
            )
        if len(set(self.category_ids)) != len(self.category_ids):
            raise ValueError(f"{self.source}: duplicate category ids in {self.category_ids}")

    @property
    def num_classes(self):
        return len(self.category_ids)

    def label_to_category_id(self, labels):
        """Contiguous labels (any shape) -> the dataset's category ids, int64; ValueError on a label out of range."""
        labels = np.asarray(labels)
        unknown = labels[(labels < 0) | (labels >= self.num_classes)]
        if unknown.size:
            raise ValueError(
                f"{self.source}: unknown label(s) {sorted(set(unknown.tolist()))}, "
                f"labels are 0..{self.num_classes - 1}"
            )
        return np.asarray(self.category_ids, dtype=np.int64)[labels]

    def category_id_to_label(self, category_ids):
        """The dataset's category ids (any shape) -> contiguous labels, int32; ValueError naming unknown ids."""
        category_ids = np.asarray(category_ids)
        known = np.asarray(self.category_ids, dtype=np.int64)
        order = np.argsort(known)
        positions = np.clip(np.searchsorted(known[order], category_ids), 0, max(self.num_classes - 1, 0))
        found = known[order][positions] == category_ids if self.num_classes else np.zeros(category_ids.shape, bool)
        if not np.all(found):
            raise ValueError(
                f"{self.source}: unknown category id(s) {sorted(set(category_ids[~found].tolist()))}, "
                f"known ids are {sorted(self.category_ids)}"
            )
        return order[positions].astype(np.int32)

    def shard(self, index, count):
        """Worker `index`'s share of the records when `count` workers train together: shares are disjoint and
        cover every record. TFRecord datasets are split by file where there are enough files (see
        `TFRecordImages.shard`), others by record (every count-th)."""
        if not 0 <= index < count:
            raise ValueError(f"{self.source}: worker {index} of {count} does not exist")
        if len(self.records) < count:
            raise DataError(f"{self.source}: {len(self.records)} images cannot be shared by {count} workers")
        if count == 1:
            return self
        if self.image_source is not None:
            indices, image_source = self.image_source.shard(index, count)
        else:
            indices, image_source = range(index, len(self.records), count), None
        if not len(indices):
            raise DataError(f"{self.source}: worker {index} of {count} gets no images (too few files to split by "
                             "file and by record; write more, smaller TFRecord shards)")
        return dataclasses.replace(self, records=[self.records[i] for i in indices], image_source=image_source)

    def label_map(self):
        """{category_id: class name}."""
        return dict(zip(self.category_ids, self.class_names))
