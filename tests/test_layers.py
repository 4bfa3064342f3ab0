"""The layers: FeaturePyramid, RetinaNetHead and DetectionDecoder in detail, and `run_layer_test` on every layer."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_retinanet.layers import (
    AnchorGenerator,
    DetectionDecoder,
    FeaturePyramid,
    FrozenBatchNormalization,
    GroupNormalization,
    ImageNormalization,
    RetinaNetHead,
)
from keras_retinanet.layers.feature_pyramid import upsample_nearest
from layer_testing import run_layer_test


def _features(height, width, channels=(8, 12, 16), seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in (8, 16, 32)]
    return [rng.normal(size=(2, h, w, c)).astype(np.float32) for (h, w), c in zip(sizes, channels)]


def test_pyramid_shapes_on_odd_sizes():
    pyramid = FeaturePyramid(filters=16)
    outputs = pyramid(_features(200, 328))
    assert [tuple(o.shape) for o in outputs] == [
        (2, 25, 41, 16), (2, 13, 21, 16), (2, 7, 11, 16), (2, 4, 6, 16), (2, 2, 3, 16)
    ]


def test_p6_from_c5_or_p5():
    features = _features(64, 64)
    from_c5 = FeaturePyramid(filters=16, p6_input="c5")
    from_p5 = FeaturePyramid(filters=16, p6_input="p5")
    from_c5(features), from_p5(features)
    assert from_c5.p6_conv.kernel.shape == (3, 3, 16, 16)  # C5 has 16 channels here too: compare values instead
    from_p5.set_weights(from_c5.get_weights())
    c5_out, p5_out = from_c5(features), from_p5(features)
    np.testing.assert_allclose(c5_out[2], p5_out[2], rtol=1e-6)  # P5 identical
    assert not np.allclose(c5_out[3], p5_out[3])  # P6 differs
    # P6 = conv3x3/s2 (symmetric padding 1) of C5.
    expected = tf.nn.conv2d(features[2], from_c5.p6_conv.kernel, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])
    np.testing.assert_allclose(c5_out[3], expected + from_c5.p6_conv.bias, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="p6_input"):
        FeaturePyramid(p6_input="c4")


def test_upsampling_follows_pytorch_nearest():
    x = np.arange(13 * 7, dtype=np.float32).reshape(1, 13, 7, 1)
    out = upsample_nearest(tf.constant(x), tf.constant([25, 13])).numpy()
    rows = (np.arange(25) * 13) // 25
    cols = (np.arange(13) * 7) // 13
    np.testing.assert_array_equal(out[0, :, :, 0], x[0, rows][:, cols, 0])


def test_head_initialisation_and_output_layout():
    head = RetinaNetHead(5, num_anchors=9, filters=32, num_convs=4, prior_probability=0.01)
    features = [np.random.default_rng(1).normal(size=(1, s, s, 32)).astype(np.float32) for s in (8, 4, 2)]
    logits = head(features).numpy()
    assert logits.shape == (1, (64 + 16 + 4) * 9, 5)
    np.testing.assert_allclose(head.output_conv.bias.numpy(), -math.log(99), rtol=1e-6)
    for conv in head.hidden_convs + [head.output_conv]:
        assert abs(np.std(conv.kernel.numpy()) - 0.01) < 0.002
    # Layout: the output of level 0 at (y, x) is rows (y * 8 + x) * 9 ... + 9 of the flattened tensor.
    raw = head.output_conv(_hidden(head, features[0])).numpy().reshape(1, 8, 8, 9, 5)
    np.testing.assert_allclose(logits[0, (3 * 8 + 2) * 9 : (3 * 8 + 3) * 9], raw[0, 3, 2], rtol=1e-5)


def _hidden(head, x):
    for conv in head.hidden_convs:
        x = tf.nn.relu(conv(x))
    return x


def test_head_shares_weights_across_levels_and_group_norm_option():
    head = RetinaNetHead(4, num_anchors=9, filters=32, normalization="group_norm", groups=8, use_bias=False)
    head([np.zeros((1, 4, 4, 32), np.float32), np.zeros((1, 2, 2, 32), np.float32)])
    # 4 convs without bias + 4 GroupNorms (gamma, beta) + the output conv (kernel, bias), whatever the levels.
    assert len(head.weights) == 4 + 4 * 2 + 2
    assert head.norms[0].epsilon == 1e-5 and head.norms[0].groups == 8
    with pytest.raises(ValueError, match="normalization"):
        RetinaNetHead(4, normalization="batch_norm")


def _decoder_inputs():
    """Class logits [2, 30, 3] and valid xyxy boxes [2, 30, 4] of 30 anchors on two levels (20 + 10)."""
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 64, (2, 30, 2, 2)), axis=2)  # [..., (min, max), (x, y)]
    return [rng.normal(-3, 2, (2, 30, 3)).astype(np.float32),
            corners.reshape(2, 30, 4).astype(np.float32)]


# (layer, inputs, output shape, trainable weights, non-trainable weights, call kwargs)
LAYER_CASES = {
    "feature_pyramid": lambda: (FeaturePyramid(filters=16, p6_input="p5", relu_before_p7=False),
                                [_features(64, 96)], [(2, 8, 12, 16), (2, 4, 6, 16), (2, 2, 3, 16), (2, 1, 2, 16),
                                                      (2, 1, 1, 16)], 16, 0, {}),
    "head": lambda: (RetinaNetHead(7, num_anchors=3, filters=8, num_convs=2, prior_probability=0.02),
                     [[np.ones((2, 4, 4, 8), np.float32), np.ones((2, 2, 2, 8), np.float32)]], (2, 60, 7), 6, 0, {}),
    "head_group_norm": lambda: (RetinaNetHead(4, num_anchors=3, filters=8, num_convs=1, normalization="group_norm",
                                              groups=4, use_bias=False),
                                [[np.random.default_rng(1).normal(size=(1, 3, 5, 8)).astype(np.float32)]],
                                (1, 45, 4), 5, 0, {}),  # conv, GN gamma and beta, output conv and bias
    "decoder": lambda: (DetectionDecoder(score_threshold=0.1, pre_nms_top_k=5, iou_threshold=0.6, max_detections=4),
                        _decoder_inputs(), {"boxes": (2, 4, 4), "scores": (2, 4), "classes": (2, 4),
                                                "num_detections": (2,)}, 0, 0,
                        {"level_anchor_counts": [20, 10], "image_size": [64, 64]}),
    "anchor_generator": lambda: (AnchorGenerator(sizes=[16, 32, 64, 128, 256], mode="torchvision"), [[96, 64]],
                                 (9 * (12 * 8 + 6 * 4 + 3 * 2 + 2 * 1 + 1 * 1), 4), 0, 0, {}),
    "frozen_batch_norm": lambda: (FrozenBatchNormalization(epsilon=0.0),
                                  [np.random.default_rng(2).normal(size=(2, 3, 3, 5)).astype(np.float32)],
                                  (2, 3, 3, 5), 0, 4, {}),
    "group_norm": lambda: (GroupNormalization(groups=2, epsilon=1e-5),
                           [np.random.default_rng(3).normal(size=(2, 3, 3, 4)).astype(np.float32)], (2, 3, 3, 4), 2,
                           0, {}),
    "image_normalization": lambda: (ImageNormalization.preset("caffe"),
                                    [np.random.default_rng(4).uniform(0, 255, (1, 4, 5, 3)).astype(np.float32)],
                                    (1, 4, 5, 3), 0, 0, {}),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_every_layer_passes_the_layer_test(case, tmp_path):
    layer, inputs, shape, trainable, non_trainable, call_kwargs = LAYER_CASES[case]()
    run_layer_test(layer, inputs, shape, trainable, non_trainable, tmp_path, call_kwargs)


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
    detections = decoder(logits, boxes, level_anchor_counts=[4], image_size=[100, 100])
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
    detections = DetectionDecoder(pre_nms_top_k=1)(logits, boxes, level_anchor_counts=[3, 3], image_size=[100, 100])
    np.testing.assert_allclose(detections["scores"][0, :3], [0.95, 0.3, 0.0], rtol=1e-5)
    np.testing.assert_allclose(detections["boxes"][0, :2], [[0, 0, 10, 10], [60, 60, 70, 100]])


def test_decoder_compiles_with_xla_and_handles_no_detections():
    decoder = DetectionDecoder(max_detections=3)
    logits = np.full((2, 9, 4), -8.0, np.float32)
    boxes = np.tile(np.array([[0, 0, 5, 5]], np.float32), (2, 9, 1))
    compiled = tf.function(lambda l, b: decoder(l, b, level_anchor_counts=[9], image_size=[32, 32]), jit_compile=True)
    detections = compiled(logits, boxes)
    assert detections["num_detections"].numpy().tolist() == [0, 0]
    assert (detections["classes"].numpy() == -1).all()


def test_group_normalization_matches_float64_statistics_and_round_trips():
    from keras_retinanet.layers import GroupNormalization

    rng = np.random.default_rng(0)
    inputs = (50.0 + 3.0 * rng.standard_normal((2, 40, 30, 64))).astype(np.float32)  # large mean, small spread
    layer = GroupNormalization(groups=32, epsilon=1e-5)
    layer.build(inputs.shape)
    gamma, beta = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    layer.set_weights([gamma, beta])
    grouped = inputs.astype(np.float64).reshape(2, 40, 30, 32, 2)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    variance = grouped.var(axis=(1, 2, 4), keepdims=True)
    expected = ((grouped - mean) / np.sqrt(variance + 1e-5)).reshape(inputs.shape) * gamma + beta
    np.testing.assert_allclose(layer(inputs).numpy(), expected, atol=2e-5)
    clone = GroupNormalization.from_config(layer.get_config())
    assert clone.groups == 32 and clone.epsilon == 1e-5
    with pytest.raises(ValueError, match="last axis only"):
        GroupNormalization(groups=4, axis=1)
