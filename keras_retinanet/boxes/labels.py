"""The label values other than class indices (>= 0): one name for each meaning, in one place.

Ground-truth rows (`fit`'s `labels` [B, M], the pipeline's padded batches) and anchor targets (the `AnchorLabeler`'s
`class_targets` [B, N], what the classification losses read) use -1 and -2 with different meanings, so each has its
own namespace; the `Matcher`'s verdicts are a third.
"""


class GroundTruth:
    """Label values of ground-truth rows besides a class."""

    PADDING = -1  # no box: pads an image's rows to `data.max_boxes`
    IGNORE_REGION = -2  # a region (COCO crowd, VOC difficult) whose anchors are ignored rather than background


class AnchorTarget:
    """Class-target values of anchors besides their matched box's class."""

    BACKGROUND = -1  # negative: every class trained towards 0
    IGNORED = -2  # no classification loss at all


class Match:
    """The `Matcher`'s verdict on an anchor."""

    POSITIVE = 1  # IoU >= positive_threshold (or a box's best anchor, with low-quality matches)
    NEGATIVE = 0  # IoU < negative_threshold
    BETWEEN_THRESHOLDS = -1  # neither: ignored
