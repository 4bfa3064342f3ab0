"""The in-memory form of a detection dataset that every reader produces and the input pipeline consumes."""

import dataclasses

import numpy as np


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
        boxes: [M, 4] float32 `xyxy` pixels.
        labels: [M] int32 contiguous class indices 0..K-1.
        ignore_boxes: [K, 4] float32 `xyxy` regions ignored in training (e.g. COCO crowd boxes); may be empty.
    """

    image_id: int
    path: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore_boxes: np.ndarray

    def __post_init__(self):
        boxes = _read_only(self.boxes, np.float32)
        labels = _read_only(self.labels, np.int32)
        ignore_boxes = _read_only(self.ignore_boxes, np.float32)
        for name, array in (("boxes", boxes), ("ignore_boxes", ignore_boxes)):
            if array.ndim != 2 or array.shape[1] != 4:
                raise ValueError(f"image {self.image_id} ({self.path}): {name} must be [N, 4], got shape {array.shape}")
        if labels.shape != (boxes.shape[0],):
            raise ValueError(
                f"image {self.image_id} ({self.path}): labels must be [{boxes.shape[0]}] (one per box), "
                f"got shape {labels.shape}"
            )
        if labels.size and labels.min() < 0:
            raise ValueError(f"image {self.image_id} ({self.path}): negative label {labels.min()}")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "ignore_boxes", ignore_boxes)


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
    """

    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int]
    source: str = ""

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

    def label_map(self):
        """{category_id: class name}."""
        return dict(zip(self.category_ids, self.class_names))
