"""IoU, box coding, matching and anchor labelling, checked against hand-computed cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.boxes import AnchorLabeler, BoxCoder, Matcher, generalized_iou, pairwise_iou
from keras_retinanet.boxes.labels import AnchorTarget, Match


def test_pairwise_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
    b = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 10], [0, 0, 0, 0]], np.float32)
    iou = pairwise_iou(a, b).numpy()
    np.testing.assert_allclose(
        iou, [[1.0, 0.0, 0.5, 0.0], [25 / 175, 25 / 175, 0.0, 0.0]], rtol=1e-6
    )


def test_generalized_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    # Disjoint boxes: IoU 0, hull 30 x 10 = 300, union 200 -> GIoU = -(300 - 200) / 300.
    np.testing.assert_allclose(generalized_iou(a, b).numpy(), [1.0, -1 / 3], rtol=1e-6)


def test_box_coder_values_and_round_trip():
    coder = BoxCoder()
    anchors = np.array([[0, 0, 10, 20]], np.float32)
    boxes = np.array([[5, 0, 25, 20]], np.float32)
    # Centres (5, 10) -> (15, 10); sizes (10, 20) -> (20, 20).
    np.testing.assert_allclose(coder.encode(boxes, anchors).numpy(), [[1.0, 0.0, math.log(2), 0.0]], rtol=1e-6)

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 500, (1000, 2)).astype(np.float32)
    sizes = rng.uniform(4, 300, (1000, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    anchors = np.concatenate([corners + 3, corners + sizes * 1.3], axis=1)
    for weights in [(1, 1, 1, 1), (10, 10, 5, 5)]:
        coder = BoxCoder(weights)
        decoded = coder.decode(coder.encode(boxes, anchors), anchors).numpy()
        np.testing.assert_allclose(decoded, boxes, atol=1e-3)


def test_box_coder_clamps_large_scales():
    coder = BoxCoder()
    decoded = coder.decode(np.array([[0, 0, 100.0, 100.0]], np.float32), np.array([[0, 0, 16, 16]], np.float32))
    np.testing.assert_allclose(decoded.numpy(), [[8 - 500, 8 - 500, 8 + 500, 8 + 500]], rtol=1e-5)
    with pytest.raises(ValueError, match="4 positive"):
        BoxCoder((1, 1, 0, 1))


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


ANCHORS = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [100, 100, 110, 110]], np.float32)


def test_labeler_batched_with_padding_and_empty_image():
    boxes = np.array([[[0, 0, 10, 10], [10, 0, 20, 11], [0, 0, 0, 0]], [[0, 0, 0, 0]] * 3], np.float32)
    labels = np.array([[2, 0, -1], [-1, -1, -1]])
    targets = AnchorLabeler()(ANCHORS, boxes, labels)
    assert targets["class_targets"].numpy().tolist() == [
        [2, 0, AnchorTarget.BACKGROUND, AnchorTarget.BACKGROUND],
        [AnchorTarget.BACKGROUND] * 4,
    ]
    coder = BoxCoder()
    np.testing.assert_allclose(targets["box_targets"][0, 1], coder.encode(boxes[0, 1], ANCHORS[1]), rtol=1e-6)
    np.testing.assert_allclose(targets["box_targets"][0, 2:], 0.0)
    np.testing.assert_allclose(targets["matched_boxes"][0, 0], boxes[0, 0])
    assert np.isfinite(targets["box_targets"].numpy()).all()


def test_labeler_marks_the_ignore_band():
    # IoU of [0, 0, 10, 10] with [0, 0, 10, 5.5] is 0.55 (positive), with [0, 0, 10, 4.5] 0.45 (ignored).
    labeler = AnchorLabeler(Matcher(allow_low_quality_matches=False))
    targets = labeler(ANCHORS[:1], np.array([[0, 0, 10, 4.5]], np.float32), np.array([1]))
    assert targets["class_targets"].numpy().tolist() == [AnchorTarget.IGNORED]
    targets = labeler(ANCHORS[:1], np.array([[0, 0, 10, 5.5]], np.float32), np.array([1]))
    assert targets["class_targets"].numpy().tolist() == [1]


def test_labeler_runs_in_tf_data_and_under_xla():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32)
    labels = np.array([1, -1])
    labeler = AnchorLabeler()
    dataset = tf.data.Dataset.from_tensors((boxes, labels)).map(lambda b, l: labeler(ANCHORS, b, l))
    from_data = next(iter(dataset))
    compiled = tf.function(lambda b, l: labeler(ANCHORS, b[None], l[None]), jit_compile=True)(boxes, labels)
    assert from_data["class_targets"].numpy().tolist() == [1, AnchorTarget.BACKGROUND, AnchorTarget.BACKGROUND, AnchorTarget.BACKGROUND]
    np.testing.assert_array_equal(compiled["class_targets"][0], from_data["class_targets"])


def test_labeler_ignore_regions():
    # A crowd region covering anchors 0 and 1 (label -2) and one object on anchor 2.
    boxes = np.array([[0, 0, 20, 10], [0, 10, 10, 20]], np.float32)
    labels = np.array([-2, 1])
    targets = AnchorLabeler()(ANCHORS, boxes, labels)
    assert targets["class_targets"].numpy().tolist() == [AnchorTarget.IGNORED, AnchorTarget.IGNORED, 1, AnchorTarget.BACKGROUND]
    # Half an anchor inside the region is enough at the default threshold; less is background.
    half = AnchorLabeler()(ANCHORS[:1], np.array([[5, 0, 40, 40]], np.float32), np.array([-2]))
    less = AnchorLabeler()(ANCHORS[:1], np.array([[6, 0, 40, 40]], np.float32), np.array([-2]))
    assert half["class_targets"].numpy().tolist() == [AnchorTarget.IGNORED]
    assert less["class_targets"].numpy().tolist() == [AnchorTarget.BACKGROUND]
    # A positive anchor stays positive inside a region.
    both = AnchorLabeler()(ANCHORS[:1], np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32), np.array([0, -2]))
    assert both["class_targets"].numpy().tolist() == [0]
