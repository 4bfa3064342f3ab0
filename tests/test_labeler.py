"""Per-anchor training targets (`keras_retinanet.boxes.labeler`)."""

import numpy as np
import tensorflow as tf

from keras_retinanet.boxes import AnchorLabeler, BoxCoder, Matcher
from keras_retinanet.boxes.labels import AnchorTarget


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
    dataset = tf.data.Dataset.from_tensors((boxes, labels)).map(lambda b, y: labeler(ANCHORS, b, y))
    from_data = next(iter(dataset))
    compiled = tf.function(lambda b, y: labeler(ANCHORS, b[None], y[None]), jit_compile=True)(boxes, labels)
    assert from_data["class_targets"].numpy().tolist() == [1] + [AnchorTarget.BACKGROUND] * 3
    np.testing.assert_array_equal(compiled["class_targets"][0], from_data["class_targets"])


def test_labeler_ignore_regions():
    # A crowd region covering anchors 0 and 1 (label -2) and one object on anchor 2.
    boxes = np.array([[0, 0, 20, 10], [0, 10, 10, 20]], np.float32)
    labels = np.array([-2, 1])
    targets = AnchorLabeler()(ANCHORS, boxes, labels)
    ignored, background = AnchorTarget.IGNORED, AnchorTarget.BACKGROUND
    assert targets["class_targets"].numpy().tolist() == [ignored, ignored, 1, background]
    # Half an anchor inside the region is enough at the default threshold; less is background.
    half = AnchorLabeler()(ANCHORS[:1], np.array([[5, 0, 40, 40]], np.float32), np.array([-2]))
    less = AnchorLabeler()(ANCHORS[:1], np.array([[6, 0, 40, 40]], np.float32), np.array([-2]))
    assert half["class_targets"].numpy().tolist() == [AnchorTarget.IGNORED]
    assert less["class_targets"].numpy().tolist() == [AnchorTarget.BACKGROUND]
    # A positive anchor stays positive inside a region.
    both = AnchorLabeler()(ANCHORS[:1], np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32), np.array([0, -2]))
    assert both["class_targets"].numpy().tolist() == [0]
