"""The AnchorGenerator: counts, the paper's sizes and ratios, order, and the torchvision mode."""

import numpy as np
import keras
import pytest

from keras_retinanet.layers import AnchorGenerator


def _areas_and_ratios(anchors):
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    return widths * heights, heights / widths


def test_640_input_gives_76725_anchors():
    anchors = AnchorGenerator()([640, 640]).numpy()
    assert anchors.shape == (76725, 4)
    assert sum(AnchorGenerator().level_anchor_counts([640, 640])).numpy() == 76725


def test_p3_cell_anchors_have_the_papers_sizes_and_ratios():
    anchors = AnchorGenerator()([640, 640]).numpy()
    cell = anchors[:9]  # level 3, location (0, 0)
    areas, ratios = _areas_and_ratios(cell)
    expected_sizes = [32 * 2 ** (s / 3) for s in range(3)]
    # Ratio-major order: a = ratio_index * 3 + scale_index.
    np.testing.assert_allclose(areas, [s**2 for s in expected_sizes] * 3, rtol=1e-5)
    np.testing.assert_allclose(ratios, np.repeat([0.5, 1.0, 2.0], 3), rtol=1e-5)
    centres = (cell[:, :2] + cell[:, 2:]) / 2
    np.testing.assert_allclose(centres, 4.0)  # the centre of the first 8-pixel cell
    # The largest anchor of P7 (512 * 2^(2/3) ~ 813 px): the paper's 32-813 pixel range.
    last_areas, _ = _areas_and_ratios(anchors[-9:])
    np.testing.assert_allclose(np.sqrt(last_areas.max()), 512 * 2 ** (2 / 3), rtol=1e-5)


def test_order_is_level_then_row_then_column_then_anchor():
    generator = AnchorGenerator()
    anchors = generator([256, 128]).numpy()
    # Level 3 of a 256 x 128 image: 32 rows x 16 columns.
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2)[: 32 * 16 * 9].reshape(32, 16, 9, 2)
    np.testing.assert_allclose(centres[2, 5, 0], [5 * 8 + 4, 2 * 8 + 4])
    np.testing.assert_allclose(centres[2, 5], np.broadcast_to(centres[2, 5, :1], (9, 2)))
    level_4 = anchors[32 * 16 * 9 :][:9]
    np.testing.assert_allclose((level_4[:, :2] + level_4[:, 2:]) / 2, 8.0)


def test_any_input_size_follows_the_ceil_feature_sizes():
    sizes = [(int(h), int(w)) for h, w in AnchorGenerator().feature_sizes([100, 333])]
    assert sizes == [(13, 42), (7, 21), (4, 11), (2, 6), (1, 3)]


def test_torchvision_mode_sizes_rounding_and_strides():
    generator = AnchorGenerator(mode="torchvision")
    anchors = generator([800, 1216]).numpy()
    # torchvision's cell anchors for size 32: sizes int-truncated (32, 40, 50), rounded half-to-even.
    np.testing.assert_array_equal(
        anchors[:9],
        [[-23, -11, 23, 11], [-28, -14, 28, 14], [-35, -18, 35, 18],
         [-16, -16, 16, 16], [-20, -20, 20, 20], [-25, -25, 25, 25],
         [-11, -23, 11, 23], [-14, -28, 14, 28], [-18, -35, 18, 35]],
    )
    # Strides are image // feature size: P6 of an 800-high image is 13 high, stride 61; P7 is 7 high, stride 114.
    counts = [int(c) for c in generator.level_anchor_counts([800, 1216])]
    p7 = anchors[sum(counts[:4]) :]
    p7_centres_y = ((p7[:, 1] + p7[:, 3]) / 2).reshape(7, 10, 9)[:, 0, 4]
    np.testing.assert_allclose(p7_centres_y, np.arange(7) * 114)
    p6 = anchors[sum(counts[:3]) : sum(counts[:4])]
    p6_centres_x = ((p6[:, 0] + p6[:, 2]) / 2).reshape(13, 19, 9)[0, :, 4]
    np.testing.assert_allclose(p6_centres_x, np.arange(19) * (1216 // 19))


def test_config_round_trip_and_validation():
    generator = AnchorGenerator(sizes=(16, 32, 64, 128, 256), aspect_ratios=(1.0,), mode="paper", offset=0.0)
    restored = AnchorGenerator.from_config(generator.get_config())
    np.testing.assert_array_equal(generator([64, 64]), restored([64, 64]))
    assert restored.num_anchors_per_location == 3
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(generator)).offset == 0.0
    with pytest.raises(ValueError, match="mode"):
        AnchorGenerator(mode="detectron")
    with pytest.raises(ValueError, match="one size per level"):
        AnchorGenerator(sizes=(32, 64))
    with pytest.raises(ValueError, match="offset 0"):
        AnchorGenerator(mode="torchvision", offset=0.5)
