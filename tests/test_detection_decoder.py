"""DetectionDecoder: class-wise NMS, per-level top-k, clipping, XLA, no detections."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.layers import DetectionDecoder


def _logit(p):
    return math.log(p / (1 - p))


def test_decoder_class_wise_nms_threshold_and_padding():
    boxes = np.array([[[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]]], np.float32)
    logits = np.full((1, 4, 2), -10.0, np.float32)
    logits[0, 0, 0] = _logit(0.9)  # class 0
    logits[0, 1, 0] = _logit(0.8)  # class 0, IoU 0.82 with box 0: suppressed
    logits[0, 2, 1] = _logit(0.7)  # same place, class 1: kept (NMS is class-wise)
    logits[0, 3, 1] = _logit(0.04)  # below the 0.05 score threshold
    decoder = DetectionDecoder(max_detections=5)
    detections = decoder(logits, boxes, level_anchor_counts=[4], content_size=[100, 100])
    assert int(detections["num_detections"][0]) == 2
    np.testing.assert_allclose(detections["scores"][0], [0.9, 0.7, 0, 0, 0], rtol=1e-5)
    assert detections["classes"][0].numpy().tolist() == [0, 1, -1, -1, -1]
    np.testing.assert_allclose(detections["boxes"][0, :2], boxes[0, [0, 2]])
    np.testing.assert_array_equal(detections["boxes"][0, 2:], 0.0)


def test_decoder_keeps_the_top_k_of_each_level_and_clips():
    # Two levels of 3 anchors; top-1 per level keeps the best of each level, not the two best overall.
    boxes = np.array([[[-5, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                       [60, 60, 70, 120], [80, 80, 90, 90], [0, 80, 9, 90]]], np.float32)
    logits = np.full((1, 6, 1), -10.0, np.float32)
    logits[0, :, 0] = [_logit(p) for p in (0.95, 0.9, 0.1, 0.3, 0.2, 0.1)]
    detections = DetectionDecoder(pre_nms_top_k=1)(logits, boxes, level_anchor_counts=[3, 3], content_size=[100, 100])
    np.testing.assert_allclose(detections["scores"][0, :3], [0.95, 0.3, 0.0], rtol=1e-5)
    np.testing.assert_allclose(detections["boxes"][0, :2], [[0, 0, 10, 10], [60, 60, 70, 100]])


def test_decoder_compiles_with_xla_and_handles_no_detections():
    decoder = DetectionDecoder(max_detections=3)
    logits = np.full((2, 9, 4), -8.0, np.float32)
    boxes = np.tile(np.array([[0, 0, 5, 5]], np.float32), (2, 9, 1))
    compiled = tf.function(lambda x, b: decoder(x, b, level_anchor_counts=[9], content_size=[32, 32]), jit_compile=True)
    detections = compiled(logits, boxes)
    assert detections["num_detections"].numpy().tolist() == [0, 0]
    assert (detections["classes"].numpy() == -1).all()


def test_boxes_squeezed_flat_at_the_images_edge_are_dropped_before_the_top_k():
    """An image of 40 x 30 inside a padded 64 x 64 input: a box lying in the padding, clipped to the image, has no
    width left; it is dropped before the per-level top-k, so the next best box takes its place."""
    boxes = np.array([[[35, 5, 60, 20],  # right of the image: zero width once clipped to width 30
                       [5, 45, 20, 60],  # below it: zero height
                       [29.995, 5, 31, 20],  # 0.005 wide once clipped: narrower than min_box_size (0.01)
                       [2, 2, 12, 12], [28, 30, 50, 50]]], np.float32)  # inside; and across the edge: kept, clipped
    logits = np.full((1, 5, 1), -10.0, np.float32)
    logits[0, :, 0] = [_logit(p) for p in (0.9, 0.85, 0.8, 0.6, 0.5)]
    decoder = DetectionDecoder(pre_nms_top_k=2, max_detections=5)
    detections = decoder(logits, boxes, level_anchor_counts=[5], content_size=np.array([[40, 30]]))
    assert int(detections["num_detections"][0]) == 2
    np.testing.assert_allclose(detections["scores"][0, :2], [0.6, 0.5], rtol=1e-5)
    np.testing.assert_allclose(detections["boxes"][0, :2], [[2, 2, 12, 12], [28, 30, 30, 40]])
    with pytest.raises(ValueError, match="positive, finite min_box_size, got 0"):
        DetectionDecoder(min_box_size=0)


def test_the_old_size_names_still_work_with_a_deprecation_warning():
    """`image_size` / `image_sizes` were renamed `content_size` / `padded_size` / `content_sizes`; the old names
    give the same detections and say so once; both names at once is an error."""
    logits = tf.constant(np.log([[[0.9 / 0.1]], [[0.8 / 0.2]]]), tf.float32)  # [2, 1, 1]
    boxes = tf.constant([[[10.0, 10.0, 90.0, 60.0]]] * 2)
    decoder = DetectionDecoder()
    new = decoder(logits, boxes, level_anchor_counts=[1], content_size=[[50, 80], [40, 70]])
    with pytest.warns(DeprecationWarning, match="image_size is now called content_size"):
        old = decoder(logits, boxes, level_anchor_counts=[1], image_size=[[50, 80], [40, 70]])
    np.testing.assert_array_equal(old["boxes"].numpy(), new["boxes"].numpy())
    assert new["boxes"][1, 0].numpy().tolist() == [10.0, 10.0, 70.0, 40.0]
    with pytest.raises(TypeError, match="give content_size only"):
        decoder(logits, boxes, level_anchor_counts=[1], content_size=[50, 80], image_size=[50, 80])
