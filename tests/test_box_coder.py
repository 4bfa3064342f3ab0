"""R-CNN box coding (`keras_retinanet.boxes.box_coder`)."""

import math

import numpy as np
import pytest

from keras_retinanet.boxes import BoxCoder


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
