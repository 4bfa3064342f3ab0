"""Drawing detections: outline colours, thresholds, captions at the edge, input checks and image grids."""

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.visualization import PALETTE, class_colour, draw_detections, image_grid, readable_text_colour

BACKGROUND = (90, 90, 90)
CLASS_NAMES = ["cat", "dog", "bird"]


def grey_image(height=120, width=160):
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def test_outline_has_class_colour_and_interior_is_unchanged():
    image = grey_image()
    drawn = np.asarray(draw_detections(image, [[40, 50, 120, 110]], scores=[0.9], class_names=CLASS_NAMES,
                                       labels=[1]))
    dog = class_colour(1)
    for x in (40, 41, 119, 120):  # the 2 px outline lies inside the box's corners
        assert tuple(drawn[80, x]) == dog
    for y in (109, 110):
        assert tuple(drawn[y, 80]) == dog
    assert np.all(drawn[60:100, 50:110] == BACKGROUND)
    assert tuple(drawn[80, 39]) == BACKGROUND and tuple(drawn[80, 121]) == BACKGROUND


def test_classes_have_distinct_fixed_colours():
    assert len(set(PALETTE)) == 20
    assert len({class_colour(index) for index in range(40)}) == 40
    assert class_colour(3) == class_colour(3)

    boxes = [[10, 30, 50, 100], [60, 30, 100, 100], [110, 30, 150, 100]]
    drawn = np.asarray(draw_detections(grey_image(), boxes, class_names=CLASS_NAMES, labels=[0, 2, 0]))
    left, middle, right = (tuple(drawn[60, x]) for x in (10, 60, 110))
    assert left == right == class_colour(0)
    assert middle == class_colour(2) != left


def test_box_below_threshold_is_not_drawn():
    image = grey_image()
    drawn = draw_detections(image, [[40, 50, 120, 110]], scores=[0.3], class_names=CLASS_NAMES, labels=[0],
                            score_threshold=0.5)
    np.testing.assert_array_equal(np.asarray(drawn), image)


def test_caption_of_box_at_top_edge_is_inside_the_box():
    drawn = np.asarray(draw_detections(grey_image(), [[20, 0, 140, 100]], scores=[0.87], class_names=CLASS_NAMES,
                                       labels=[2]))
    caption_band = drawn[2:12, 22:60]  # below the top outline, inside the box
    bird = np.array(class_colour(2))
    assert np.mean(np.all(caption_band == bird, axis=-1)) > 0.3  # mostly caption fill
    text_colour = np.array(readable_text_colour(class_colour(2)))
    assert np.any(np.abs(caption_band.astype(int) - text_colour).max(axis=-1) < 40)  # and some (anti-aliased) text


def test_caption_sits_above_a_box_with_room_above():
    drawn = np.asarray(draw_detections(grey_image(), [[20, 60, 140, 110]], scores=[0.5], labels=[0]))
    assert np.any(np.all(drawn[40:59, 20:60] == class_colour(0), axis=-1))
    assert np.all(drawn[64:105, 24:136] == BACKGROUND)


def test_boxes_are_clipped_to_the_image():
    drawn = np.asarray(draw_detections(grey_image(), [[-30, 20, 200, 90]], labels=[0]))
    assert tuple(drawn[50, 0]) == class_colour(0)
    assert tuple(drawn[50, 159]) == class_colour(0)


def test_ground_truth_is_dashed_white_and_black():
    drawn = np.asarray(draw_detections(grey_image(), np.zeros((0, 4)), ground_truth_boxes=[[30, 30, 130, 90]]))
    top_edge = {tuple(pixel) for pixel in drawn[30, 30:131]}
    assert top_edge == {(255, 255, 255), (0, 0, 0)}
    assert np.all(drawn[31:90, 31:130] == BACKGROUND)


@pytest.mark.parametrize("box, message", [
    ([10, float("nan"), 50, 60], r"boxes\[1\] is not finite: \[10.0, nan, 50.0, 60.0\]"),
    ([50, 10, 20, 60], r"boxes\[1\] has a negative size .*\[50.0, 10.0, 20.0, 60.0\]"),
])
def test_invalid_boxes_are_named(box, message):
    with pytest.raises(ValueError, match=message):
        draw_detections(grey_image(), [[0, 0, 10, 10], box])


def test_label_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"labels\[1\] = 7 is out of range for 3 class names"):
        draw_detections(grey_image(), [[0, 0, 10, 10], [20, 20, 40, 40]], class_names=CLASS_NAMES, labels=[0, 7])


def test_input_is_not_modified():
    image = grey_image()
    original = image.copy()
    draw_detections(image, [[40, 50, 120, 110]], scores=[0.9], class_names=CLASS_NAMES, labels=[0],
                    ground_truth_boxes=[[30, 40, 100, 100]])
    np.testing.assert_array_equal(image, original)

    pil_image = Image.fromarray(original)
    draw_detections(pil_image, [[40, 50, 120, 110]], labels=[0])
    np.testing.assert_array_equal(np.asarray(pil_image), original)


def test_image_grid_cells_fit_the_largest_image():
    images = [Image.new("RGB", size, colour) for size, colour in
              [((50, 40), (255, 0, 0)), ((80, 30), (0, 255, 0)), ((60, 70), (0, 0, 255))]]
    grid = image_grid(images, columns=2)
    assert grid.size == (160, 140)
    pixels = np.asarray(grid)
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[0, 80]) == (0, 255, 0)
    assert tuple(pixels[70, 0]) == (0, 0, 255)
    assert tuple(pixels[70, 80]) == (0, 0, 0)  # the empty cell


def test_caption_text_is_black_on_light_fills_and_white_on_dark_ones():
    assert readable_text_colour((255, 179, 0)) == (0, 0, 0)
    assert readable_text_colour((0, 83, 138)) == (255, 255, 255)


def test_captions_of_overlapping_detections_do_not_cover_each_other():
    """Two nearly identical boxes: the better detection's caption sits above the boxes, the other's moves inside
    them instead of on top of it (drawn at the same place, the second would cover the first)."""
    boxes = [[20, 60, 140, 110], [22, 62, 142, 112]]
    drawn = np.asarray(draw_detections(grey_image(), boxes, scores=[0.9, 0.8], class_names=CLASS_NAMES,
                                       labels=[0, 2]))
    above, inside = drawn[50:58, 24:60], drawn[66:72, 26:60]
    assert np.mean(np.all(above == class_colour(0), axis=-1)) > 0.3
    assert np.mean(np.all(inside == class_colour(2), axis=-1)) > 0.3
    assert not np.any(np.all(above == class_colour(2), axis=-1))
