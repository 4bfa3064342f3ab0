"""Dataset statistics as the model sees the data: box sizes after resizing, aspect ratios and anchor coverage.

Anchor coverage is the share of ground-truth boxes whose best anchor (at the image's resized and padded input size,
with the experiment's anchors) reaches the matcher's IoU thresholds: a box below
`model.matcher.positive_threshold` trains only through the matcher's low-quality match, one below
`negative_threshold` is a sign the anchors do not fit the data. `bin/inspect_dataset` prints these figures.

The best anchor of a box is found without comparing it with every anchor: anchors of one shape lie on a regular grid
(a level's stride), and the IoU of a box with an anchor of fixed shape only falls as the anchor's centre moves away
along either axis, so the best of each shape and level is the one whose centre is nearest (per axis) to where it
would cover the box best, clamped to the feature map. That is 45 IoUs a box with the default anchors instead of
about 150,000 at 800 x 1333, exact, and what makes the statistics and anchor fitting (`anchor_fitting.py`) of a
COCO-sized dataset take seconds.
"""

import dataclasses
import functools

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
# Boxes whose best anchors are found at once (their IoU with each anchor shape of a level held in memory).
_BOX_CHUNK = 1 << 16


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


def best_anchor_iou(boxes, padded_sizes, anchor_generator):
    """IoU [B] float32 of each `xyxy` box [B, 4] with its best anchor among those `anchor_generator` (an
    `AnchorGenerator`) gives its input of padded size `padded_sizes` [B, 2] (height, width): the same figure as
    `best_anchors(boxes, anchor_generator(padded_size))[0]`, found on the anchors' grid (see the module docstring)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    padded_sizes = np.asarray(padded_sizes, np.int64).reshape(-1, 2)
    layout = anchor_layout(anchor_generator)
    best = np.zeros(len(boxes), np.float32)
    for start in range(0, len(boxes), _BOX_CHUNK):
        chunk = slice(start, start + _BOX_CHUNK)
        best[chunk] = _best_on_grid(boxes[chunk], padded_sizes[chunk], layout, anchor_generator)
    return best


def anchor_layout(anchor_generator):
    """[(level, cell anchors [A, 4] float32 about the origin)] of `anchor_generator`: its anchors of a location are
    these shifted to the location's centre (`AnchorGenerator.cell_anchors`, NumPy: asking the generator for anchors
    runs about 40 eager TensorFlow ops, which was 80% of the time of fitting)."""
    levels = range(anchor_generator.min_level, anchor_generator.max_level + 1)
    return [(level, np.asarray(cell, np.float32)) for level, cell in zip(levels, anchor_generator.cell_anchors)]


def _best_on_grid(boxes, padded_sizes, layout, anchor_generator):
    """Best anchor IoU [B] of `boxes` over the levels and cell anchors of `layout` (see `best_anchor_iou`)."""
    best = np.zeros(len(boxes), np.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for level, cell in layout:
        overlaps = []
        for axis in (0, 1):  # x, then y
            padded = padded_sizes[:, 1 - axis]
            cells = -(-padded // 2**level)  # the feature map's side: ceil, as the backbone halves it
            if anchor_generator.mode == "torchvision":
                stride = (padded // cells).astype(np.float32)[:, None]
            else:
                stride = np.float32(2**level)
            low, high = boxes[:, axis, None], boxes[:, axis + 2, None]
            cell_low, cell_high = cell[None, :, axis], cell[None, :, axis + 2]
            wanted = ((low + high) - (cell_low + cell_high)) / 2  # the centre that aligns anchor and box
            index = np.clip(np.rint(wanted / stride - anchor_generator.offset), 0, (cells - 1)[:, None])
            centre = ((index + anchor_generator.offset) * stride).astype(np.float32)
            overlaps.append(np.maximum(np.minimum(high, centre + cell_high) - np.maximum(low, centre + cell_low), 0))
        intersection = overlaps[0] * overlaps[1]
        cell_area = (cell[:, 2] - cell[:, 0]) * (cell[:, 3] - cell[:, 1])
        union = area[:, None] + cell_area[None, :] - intersection
        iou = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
        best = np.maximum(best, iou.max(axis=1))
    return best


@functools.lru_cache
def _resize_function(resize_rule):
    """`resized_size` of each of [N, 2] sizes under `resize_rule`, one graph for any N, min and max size."""
    def resize(sizes, min_size, max_size):
        return tf.vectorized_map(lambda size: resized_size(size, min_size, max_size, resize_rule), sizes)

    signature = [tf.TensorSpec([None, 2], tf.int64), tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64)]
    return tf.function(resize, input_signature=signature, autograph=False)


@dataclasses.dataclass
class ResizedBoxes:
    """Every box of a dataset as the model sees it: `boxes` [B, 4] `xyxy` in pixels of the resized input,
    `padded_sizes` [B, 2] its input's padded (height, width), `images` [B] the index of its record."""

    boxes: np.ndarray
    padded_sizes: np.ndarray
    images: np.ndarray

    def __len__(self):
        return len(self.boxes)

    def take(self, indices):
        """The boxes at `indices`."""
        return ResizedBoxes(self.boxes[indices], self.padded_sizes[indices], self.images[indices])


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

    def resized_sizes(self, sizes):
        """[N, 2] (height, width) after `resize_image` of images of `sizes` [N, 2] (height, width): `resized_size`
        of every distinct size, in one graph."""
        sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        distinct, inverse = np.unique(sizes, axis=0, return_inverse=True)
        if not len(distinct):
            return distinct
        data = self.data
        resized = _resize_function(data.resize_rule)(tf.constant(distinct, tf.int64), data.min_size, data.max_size)
        return resized.numpy().astype(np.int64)[inverse.reshape(-1)]

    def resized_boxes(self, records):
        """`ResizedBoxes` of the boxes of `records` (`ImageRecord`s)."""
        counts = np.array([len(record.boxes) for record in records], np.int64)
        sizes = np.array([(record.height, record.width) for record in records], np.int64).reshape(-1, 2)
        resized = self.resized_sizes(sizes)
        images = np.repeat(np.arange(len(records)), counts)
        boxes = np.concatenate([record.boxes for record in records] + [np.zeros((0, 4), np.float32)])
        scale = (resized.astype(np.float32) / sizes.astype(np.float32))[images][:, ::-1]  # (x, y) per box
        padded = padded_size(resized, self.data.size_divisor)
        return ResizedBoxes(boxes * np.tile(scale, 2), padded[images], images)

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
    records, num_classes = dataset.records, dataset.num_classes
    update = image_progress(len(records), progress)
    resized = geometry.resized_boxes(records)
    best = np.zeros(len(resized), np.float32)
    for start in range(0, len(resized), _BOX_CHUNK * 4):
        chunk = resized.take(slice(start, start + _BOX_CHUNK * 4))
        best[start:start + len(chunk)] = best_anchor_iou(chunk.boxes, chunk.padded_sizes, geometry.anchor_generator)
        if chunk.images[-1] + 1 < len(records):
            update(int(chunk.images[-1]) + 1)
    update(len(records))
    widths, heights = resized.boxes[:, 2] - resized.boxes[:, 0], resized.boxes[:, 3] - resized.boxes[:, 1]
    originals = np.concatenate([record.boxes for record in records] + [np.zeros((0, 4), np.float32)])

    def counts(labels):
        return np.bincount(np.concatenate(labels + [np.zeros(0, np.int32)]), minlength=num_classes)[:num_classes]

    return DatasetStatistics(
        class_names=list(dataset.class_names),
        num_images=len(records),
        num_negatives=sum(1 for record in records if not len(record.boxes)),
        boxes_per_class=counts([record.labels for record in records]).astype(np.int64),
        ignore_per_class=counts([record.ignore_labels for record in records]).astype(np.int64),
        box_sizes=np.sqrt(widths * heights),
        coco_areas=(originals[:, 2] - originals[:, 0]) * (originals[:, 3] - originals[:, 1]),
        aspect_ratios=heights / widths,
        best_iou=best,
        box_images=[records[index].path for index in resized.images],
        box_originals=originals,
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
