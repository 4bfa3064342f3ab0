"""Dataset statistics as the model sees the data: box sizes after resizing, aspect ratios and anchor coverage.

Anchor coverage is the share of ground-truth boxes whose best anchor (at the image's resized and padded input size,
with the experiment's anchors) reaches the matcher's IoU thresholds: a box below
`model.matcher.positive_threshold` trains only through the matcher's low-quality match, one below
`negative_threshold` is a sign the anchors do not fit the data. `bin/inspect_dataset` prints these figures.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_retinanet.boxes.iou import pairwise_iou
from keras_retinanet.data.pipeline import padded_size, resized_size
from keras_retinanet.progress import image_progress

# Bin edges of the box size histogram: sqrt(area) in pixels of the resized input.
SIZE_BIN_EDGES = (16, 32, 64, 128, 256, 512)
# COCO evaluation's area ranges (pixels^2 of the original image): small < 32^2 <= medium < 96^2 <= large.
COCO_AREA_EDGES = (32**2, 96**2)
# Most IoU values computed at once (boxes x anchors), to bound memory on images with many boxes.
_IOU_CHUNK = 1 << 24


def size_bin_names(edges=SIZE_BIN_EDGES):
    """Names of the histogram bins of `edges`: "<16", "16-32", ..., ">=512"."""
    return [f"<{edges[0]}"] + [f"{low}-{high}" for low, high in zip(edges, edges[1:])] + [f">={edges[-1]}"]


def box_iou(boxes, anchors):
    """IoU of every `xyxy` box [M, 4] with every anchor [N, 4] -> [M, N] float32 numpy (`pairwise_iou`)."""
    return pairwise_iou(tf.constant(boxes, tf.float32), tf.constant(anchors, tf.float32)).numpy()


def best_anchors(boxes, anchors):
    """(best IoU [M] float32, index of that anchor [M] int64) of each box over `anchors`, in memory-bounded chunks."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    best_iou, best_index = np.zeros(len(boxes), np.float32), np.zeros(len(boxes), np.int64)
    rows = max(1, _IOU_CHUNK // max(len(anchors), 1))
    for start in range(0, len(boxes), rows):
        iou = box_iou(boxes[start:start + rows], anchors)
        best_index[start:start + rows] = np.argmax(iou, axis=1)
        best_iou[start:start + rows] = np.max(iou, axis=1)
    return best_iou, best_index


class InputGeometry:
    """The input the model sees: the resize rule and padding of a `DataConfig`, the model's `AnchorGenerator` and
    `Matcher` (its IoU thresholds).

    Sizes follow `keras_retinanet.data.pipeline.resized_size` (what `resize_image` uses) and `pad_to_multiple`,
    without touching pixels. Scale jitter is left out: sizes are the un-augmented ones.
    """

    def __init__(self, data_config, anchor_generator, matcher):
        self.data = data_config
        self.anchor_generator = anchor_generator
        self.matcher = matcher
        self._anchors = {}

    def resized_size(self, height, width):
        """(new height, new width) of a `height` x `width` image after `resize_image`."""
        data = self.data
        new_size = resized_size([height, width], data.min_size, data.max_size, data.resize_rule)
        return tuple(int(side) for side in new_size.numpy())

    def padded_size(self, height, width):
        """(height, width) rounded up to multiples of `data.size_divisor`, as `pad_to_multiple` pads."""
        return tuple(padded_size(side, self.data.size_divisor) for side in (height, width))

    def anchors(self, padded_size):
        """[N, 4] `xyxy` anchors (numpy) of a padded input size (height, width); cached per size."""
        if padded_size not in self._anchors:
            self._anchors[padded_size] = np.asarray(self.anchor_generator(list(padded_size)))
        return self._anchors[padded_size]

    def scale_boxes(self, boxes, height, width):
        """`xyxy` boxes of a `height` x `width` image in pixels of its resized input (per-axis scale)."""
        new_height, new_width = self.resized_size(height, width)
        scale = np.array([new_width, new_height], np.float32) / np.array([width, height], np.float32)
        return np.asarray(boxes, np.float32).reshape(-1, 4) * np.tile(scale, 2)

    def describe(self):
        """One line on the resize rule and the anchors, for reports."""
        data, anchors = self.data, self.anchor_generator
        sizes = ", ".join(f"{size:g}" for size in anchors.sizes)
        scales = ", ".join(f"{scale:.3g}" for scale in anchors.scales)
        ratios = ", ".join(f"{ratio:g}" for ratio in anchors.aspect_ratios)
        return (
            f"input: shorter side {data.min_size} (longer <= {data.max_size}), padded to multiples of "
            f"{data.size_divisor}; anchors ({anchors.mode}): sizes {sizes}, scales {scales}, aspect ratios (h/w) "
            f"{ratios}"
        )


@dataclasses.dataclass
class DatasetStatistics:
    """Figures of a `DetectionDataset` as an `InputGeometry` presents it to the model.

    Attributes:
        class_names: name of class i.
        num_images: images read (after the bad-input policy).
        num_negatives: images without boxes (ignore regions do not count).
        boxes_per_class, ignore_per_class: [K] counts of boxes and of ignore regions per class.
        box_sizes: [B] sqrt(area) of each box in pixels of the resized input.
        coco_areas: [B] area of each box in pixels^2 of the original image (what COCO's size ranges use).
        aspect_ratios: [B] height / width of each box (the anchors' `aspect_ratios` convention).
        best_iou: [B] IoU of each box with its best anchor.
        box_images: [B] path of each box's image; box_originals: [B, 4] each box in original pixels.
        positive_threshold, negative_threshold: the matcher's thresholds the coverage is measured at.
    """

    class_names: list
    num_images: int
    num_negatives: int
    boxes_per_class: np.ndarray
    ignore_per_class: np.ndarray
    box_sizes: np.ndarray
    coco_areas: np.ndarray
    aspect_ratios: np.ndarray
    best_iou: np.ndarray
    box_images: list
    box_originals: np.ndarray
    positive_threshold: float
    negative_threshold: float

    @property
    def num_boxes(self):
        return len(self.best_iou)

    def size_histogram(self, edges=SIZE_BIN_EDGES):
        """Box counts per bin of `size_bin_names(edges)`; a size equal to an edge falls in the bin above it."""
        return np.bincount(np.searchsorted(edges, self.box_sizes, side="right"), minlength=len(edges) + 1)

    def coco_size_counts(self):
        """(small, medium, large) box counts by COCO's area ranges, in original pixels."""
        return np.bincount(np.searchsorted(COCO_AREA_EDGES, self.coco_areas, side="right"), minlength=3)

    def coverage(self, threshold):
        """Share of boxes whose best anchor IoU is >= `threshold` (nan without boxes)."""
        return float(np.mean(self.best_iou >= threshold)) if self.num_boxes else float("nan")


def dataset_statistics(dataset, geometry, progress=False):
    """`DatasetStatistics` of `dataset` (a `DetectionDataset`) at the input of `geometry` (an `InputGeometry`);
    `progress`: show a progress bar with images/s."""
    num_classes = dataset.num_classes
    boxes_per_class = np.zeros(num_classes, np.int64)
    ignore_per_class = np.zeros(num_classes, np.int64)
    sizes, areas, ratios, best, images, originals = [], [], [], [], [], []
    update = image_progress(len(dataset.records), progress)
    for done, record in enumerate(dataset.records, 1):
        boxes_per_class += np.bincount(record.labels, minlength=num_classes)[:num_classes]
        ignore_per_class += np.bincount(record.ignore_labels, minlength=num_classes)[:num_classes]
        if len(record.boxes):
            resized = geometry.scale_boxes(record.boxes, record.height, record.width)
            widths, heights = resized[:, 2] - resized[:, 0], resized[:, 3] - resized[:, 1]
            sizes.append(np.sqrt(widths * heights))
            ratios.append(heights / widths)
            original = record.boxes
            areas.append((original[:, 2] - original[:, 0]) * (original[:, 3] - original[:, 1]))
            anchors = geometry.anchors(geometry.padded_size(*geometry.resized_size(record.height, record.width)))
            best.append(best_anchors(resized, anchors)[0])
            images.extend([record.path] * len(record.boxes))
            originals.append(original)
        update(done)
    concatenated = lambda arrays: np.concatenate(arrays) if arrays else np.zeros(0, np.float32)  # noqa: E731
    return DatasetStatistics(
        class_names=list(dataset.class_names),
        num_images=len(dataset.records),
        num_negatives=sum(1 for record in dataset.records if not len(record.boxes)),
        boxes_per_class=boxes_per_class,
        ignore_per_class=ignore_per_class,
        box_sizes=concatenated(sizes),
        coco_areas=concatenated(areas),
        aspect_ratios=concatenated(ratios),
        best_iou=concatenated(best),
        box_images=images,
        box_originals=np.concatenate(originals) if originals else np.zeros((0, 4), np.float32),
        positive_threshold=geometry.matcher.positive_threshold,
        negative_threshold=geometry.matcher.negative_threshold,
    )


def format_statistics(statistics, worst=5):
    """The report `bin/inspect_dataset` prints, with the `worst` boxes of lowest anchor IoU listed."""
    s = statistics
    lines = [f"{s.num_images} images ({s.num_negatives} negatives: images without boxes), {s.num_boxes} boxes, "
             f"{int(s.ignore_per_class.sum())} ignore regions"]
    lines.append("boxes per class (ignore regions):")
    width = max((len(name) for name in s.class_names), default=0)
    for name, count, ignored in zip(s.class_names, s.boxes_per_class, s.ignore_per_class):
        lines.append(f"  {name:<{width}}  {count} ({ignored})")
    if not s.num_boxes:
        return "\n".join(lines)
    lines.append("box size, sqrt(area) in pixels of the resized input:")
    histogram = s.size_histogram()
    for name, count in zip(size_bin_names(), histogram):
        lines.append(f"  {name:>8}  {count:6d}  {100 * count / s.num_boxes:5.1f}%")
    small, medium, large = s.coco_size_counts()
    lines.append(f"COCO size ranges (area in original pixels): small {small}, medium {medium}, large {large}")
    quantiles = np.quantile(s.aspect_ratios, [0, 0.05, 0.5, 0.95, 1])
    lines.append("aspect ratio (h/w): min {:.2f}, 5% {:.2f}, median {:.2f}, 95% {:.2f}, max {:.2f}".format(*quantiles))
    positive, negative = s.positive_threshold, s.negative_threshold
    lines.append(
        f"anchor coverage: best anchor IoU >= {positive:g} for {100 * s.coverage(positive):.1f}% of boxes "
        f"({int(np.sum(s.best_iou >= positive))}/{s.num_boxes}), >= {negative:g} for "
        f"{100 * s.coverage(negative):.1f}%; median best IoU {np.median(s.best_iou):.3f}"
    )
    if worst:
        lines.append("lowest best anchor IoU (box xyxy in original pixels):")
        for index in np.argsort(s.best_iou, kind="stable")[:worst]:
            box = ", ".join(f"{value:g}" for value in s.box_originals[index])
            lines.append(f"  {s.best_iou[index]:.3f}  {s.box_images[index]}  [{box}]")
    return "\n".join(lines)
