"""`run_layer_test` on every layer of `keras_retinanet.layers`: shapes, weights, config, safe_mode loading."""

import numpy as np
import pytest

from keras_retinanet.layers import (
    AnchorGenerator,
    DetectionDecoder,
    FeaturePyramid,
    FrozenBatchNormalization,
    GroupNormalization,
    ImageNormalization,
    RetinaNetHead,
)
from layer_testing import pyramid_features, run_layer_test


def _decoder_inputs():
    """Class logits [2, 30, 3] and valid xyxy boxes [2, 30, 4] of 30 anchors on two levels (20 + 10)."""
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 64, (2, 30, 2, 2)), axis=2)  # [..., (min, max), (x, y)]
    return [rng.normal(-3, 2, (2, 30, 3)).astype(np.float32),
            corners.reshape(2, 30, 4).astype(np.float32)]


# (layer, inputs, output shape, trainable weights, non-trainable weights, call kwargs)
LAYER_CASES = {
    "feature_pyramid": lambda: (FeaturePyramid(filters=16, p6_input="p5", relu_before_p7=False),
                                [pyramid_features(64, 96)],
                                [(2, 8, 12, 16), (2, 4, 6, 16), (2, 2, 3, 16), (2, 1, 2, 16), (2, 1, 1, 16)],
                                16, 0, {}),
    "head": lambda: (RetinaNetHead(7, num_anchors=3, filters=8, num_convs=2, prior_probability=0.02),
                     [[np.ones((2, 4, 4, 8), np.float32), np.ones((2, 2, 2, 8), np.float32)]], (2, 60, 7), 6, 0, {}),
    "head_separable": lambda: (RetinaNetHead(5, num_anchors=2, filters=8, num_convs=2, separable=True,
                                             prior_probability=0.01),
                               [[np.ones((1, 4, 4, 6), np.float32), np.ones((1, 2, 2, 6), np.float32)]], (1, 40, 5),
                               9, 0, {}),  # depthwise, pointwise and bias of each of the three convs
    "feature_pyramid_separable": lambda: (FeaturePyramid(filters=8, separable=True), [pyramid_features(64, 96)],
                                          [(2, 8, 12, 8), (2, 4, 6, 8), (2, 2, 3, 8), (2, 1, 2, 8), (2, 1, 1, 8)],
                                          21, 0, {}),  # 3 laterals x 2, 5 separable convs x 3
    "head_group_norm": lambda: (RetinaNetHead(4, num_anchors=3, filters=8, num_convs=1, normalization="group_norm",
                                              groups=4, use_bias=False),
                                [[np.random.default_rng(1).normal(size=(1, 3, 5, 8)).astype(np.float32)]],
                                (1, 45, 4), 5, 0, {}),  # conv, GN gamma and beta, output conv and bias
    "decoder": lambda: (DetectionDecoder(score_threshold=0.1, pre_nms_top_k=5, iou_threshold=0.6, max_detections=4),
                        _decoder_inputs(), {"boxes": (2, 4, 4), "scores": (2, 4), "classes": (2, 4),
                                                "num_detections": (2,)}, 0, 0,
                        {"level_anchor_counts": [20, 10], "content_size": [64, 64]}),
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
