"""The 0.5 / 0.4 IoU matching rule (`keras_retinanet.boxes.matcher`)."""

import numpy as np
import pytest

from keras_retinanet.boxes import Matcher
from keras_retinanet.boxes.labels import Match


def _match(iou, valid=None, **kwargs):
    iou = np.asarray(iou, np.float32)
    valid = np.ones(iou.shape[1], bool) if valid is None else np.asarray(valid)
    indices, labels = Matcher(**kwargs)(iou[None], valid[None])
    return indices.numpy()[0], labels.numpy()[0]


def test_matcher_thresholds_and_ignore_band():
    # Rows: anchors; columns: boxes.  IoU exactly 0.5 is positive; exactly 0.4 is ignored; below 0.4 negative.
    iou = [[0.5, 0.1], [0.4, 0.2], [0.45, 0.3], [0.39999, 0.1], [0.2, 0.7]]
    indices, labels = _match(iou, allow_low_quality_matches=False)
    assert labels.tolist() == [Match.POSITIVE, Match.BETWEEN_THRESHOLDS, Match.BETWEEN_THRESHOLDS, Match.NEGATIVE,
                              Match.POSITIVE]
    assert indices[0] == 0 and indices[4] == 1


def test_matcher_low_quality_matches_on_and_off():
    # Box 1's best anchor has IoU 0.3 (anchor 1) and a tie (anchor 2): both become positive only with the option.
    iou = [[0.6, 0.1], [0.2, 0.3], [0.1, 0.3], [0.0, 0.1]]
    _, labels_off = _match(iou, allow_low_quality_matches=False)
    indices, labels_on = _match(iou, allow_low_quality_matches=True)
    assert labels_off.tolist() == [Match.POSITIVE, Match.NEGATIVE, Match.NEGATIVE, Match.NEGATIVE]
    assert labels_on.tolist() == [Match.POSITIVE, Match.POSITIVE, Match.POSITIVE, Match.NEGATIVE]
    assert indices[1] == 1 and indices[2] == 1


def test_matcher_low_quality_match_keeps_the_anchors_own_best_box():
    # Anchor 0 is box 1's best anchor (0.3) but overlaps box 0 more (0.35): it stays matched to box 0.
    indices, labels = _match([[0.35, 0.3], [0.9, 0.1]], allow_low_quality_matches=True)
    assert labels.tolist() == [Match.POSITIVE, Match.POSITIVE]
    assert indices.tolist() == [0, 0]


def test_matcher_without_boxes_and_with_padding():
    _, labels = _match(np.zeros((3, 0)))
    assert labels.tolist() == [Match.NEGATIVE] * 3
    # A padding column never matches, even with IoU 1: anchor 0 is positive only as box 1's best anchor.
    indices, labels = _match([[1.0, 0.2], [0.0, 0.1]], valid=[False, True])
    assert labels.tolist() == [Match.POSITIVE, Match.NEGATIVE]
    assert indices.tolist() == [1, 1]


def test_matcher_rejects_crossed_thresholds():
    with pytest.raises(ValueError, match="negative_threshold"):
        Matcher(positive_threshold=0.4, negative_threshold=0.5)
