"""The augmentation steps of `data.augmentation`: every box still covers the same pixels after each step (ignore
regions included), crops drop exactly the boxes whose centre leaves them, empty images and images that lose every
box come through, the same seed gives the same whatever the parallelism, and bad settings are named by key."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from keras_retinanet.boxes.labels import GroundTruth
from keras_retinanet.config import (
    ConfigError,
    DataConfig,
    HorizontalFlip,
    IoUCrop,
    PhotometricDistortion,
    RandomResize,
    ZoomOut,
    load_config,
)
from keras_retinanet.data import DetectionDataset, ImageRecord
from keras_retinanet.data.augmentation import (
    augment,
    horizontal_flip,
    photometric_distortion,
    random_iou_crop,
    random_resize,
    zoom_out,
)
from keras_retinanet.data.pipeline import _augmentation, padding_pixel, resize_image, training_dataset

CHEAP = settings(max_examples=12, deadline=None)
FULL_LIST = (PhotometricDistortion(), ZoomOut(), IoUCrop(), RandomResize(scale=(0.8, 1.2)), HorizontalFlip())


@st.composite
def painted(draw):
    """(image, boxes, labels): an image whose red and green hold each pixel's x and y, and whose blue is 1 in the
    background and 2 + i inside box i; up to four boxes, one per quarter (so none overlap), some ignore regions."""
    height, width = draw(st.integers(16, 48)), draw(st.integers(16, 48))
    boxes, labels = [], []
    for top, left in [(0, 0), (0, width // 2), (height // 2, 0), (height // 2, width // 2)]:
        if draw(st.booleans()):
            x1, y1 = left + draw(st.integers(0, width // 4 - 2)), top + draw(st.integers(0, height // 4 - 2))
            x2, y2 = x1 + draw(st.integers(2, width // 4)), y1 + draw(st.integers(2, height // 4))
            boxes.append([x1, y1, x2, y2])
            labels.append(draw(st.sampled_from([0, 1, GroundTruth.IGNORE_REGION])))
    ys, xs = np.mgrid[:height, :width]
    image = np.stack([xs, ys, np.ones_like(xs)], axis=-1).astype(np.uint8)
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        image[y1:y2, x1:x2, 2] = 2 + index
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int32)


def _box_ids(labels, out_image, out_boxes, out_labels):
    """Checks that every output box covers exactly the pixels painted with one input box's colour, with that box's
    label; returns the indices of the input boxes that survived."""
    out_image, out_boxes, out_labels = (np.asarray(value) for value in (out_image, out_boxes, out_labels))
    assert np.array_equal(out_boxes, np.round(out_boxes)), out_boxes  # whole pixels
    ids = []
    for (x1, y1, x2, y2), label in zip(out_boxes.astype(int), out_labels):
        region = out_image[y1:y2, x1:x2, 2]
        assert region.size and np.all(region == region.flat[0]) and region.flat[0] >= 2, (x1, y1, x2, y2)
        index = int(region.flat[0]) - 2
        assert (out_image[..., 2] == index + 2).sum() == region.size  # the box holds all of its colour
        assert label == labels[index]
        ids.append(index)
    assert len(set(ids)) == len(ids)
    return ids


def _seed(value):
    return tf.constant([value, 7], tf.int64)


@CHEAP
@given(painted(), st.integers(0, 1000))
def test_flip_keeps_every_box_on_its_pixels(sample, seed):
    image, boxes, labels = sample
    out_image, out_boxes = horizontal_flip(tf.constant(image), tf.constant(boxes), _seed(seed), 0.5)
    assert _box_ids(labels, out_image, out_boxes, labels) == list(range(len(boxes)))
    flipped = out_image.numpy()[0, 0, 0] != 0
    assert out_image.shape == image.shape and (not flipped or out_image.numpy()[0, 0, 0] == image.shape[1] - 1)


@CHEAP
@given(painted(), st.integers(0, 1000))
def test_zoom_out_keeps_every_box_on_its_pixels_on_a_canvas_of_the_padding_pixel(sample, seed):
    image, boxes, labels = sample
    out_image, out_boxes = zoom_out(tf.constant(image), tf.constant(boxes), _seed(seed),
                                    ZoomOut(probability=0.8, ratio=(1.0, 3.0)), padding_pixel("detectron"))
    out = out_image.numpy()
    assert _box_ids(labels, out, out_boxes, labels) == list(range(len(boxes)))
    rows, columns = np.nonzero(out[..., 2])  # the canvas is black, the image's blue at least 1
    top, left = rows.min(), columns.min()
    np.testing.assert_array_equal(out[top:top + image.shape[0], left:left + image.shape[1]], image)
    assert (out[..., 2] > 0).sum() == image.shape[0] * image.shape[1]
    assert image.shape[0] <= out.shape[0] <= 3 * image.shape[0] and image.shape[1] <= out.shape[1] <= 3 * image.shape[1]


def test_zoom_out_fills_with_the_resize_rules_padding_pixel():
    image = tf.fill([8, 8, 3], 255.0)
    out, _ = zoom_out(image, tf.zeros([0, 4]), _seed(1), ZoomOut(probability=1.0, ratio=(3.0, 3.0)),
                      padding_pixel("torchvision"))
    assert out.shape == (24, 24, 3)
    corners = out.numpy()[[0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_array_equal(corners, np.tile(padding_pixel("torchvision").numpy(), (4, 1)))
    assert (out.numpy() == 255).all(axis=-1).sum() == 64  # the image's pixels exactly as they were


@settings(max_examples=30, deadline=None)  # about half crop, and some of those drop boxes
@given(painted(), st.integers(0, 1000), st.sampled_from([(0.0,), (0.3,), (0.5, 0.9), (None, 0.1)]))
def test_iou_crop_drops_exactly_the_boxes_whose_centre_leaves_it_and_clips_the_others(sample, seed, min_ious):
    image, boxes, labels = sample
    step = IoUCrop(min_ious=min_ious, scale=(0.3, 1.0), trials=20)
    out_image, out_boxes, out_labels = random_iou_crop(tf.constant(image), tf.constant(boxes), tf.constant(labels),
                                                       _seed(seed), step)
    out = out_image.numpy()
    left, top = int(out[0, 0, 0]), int(out[0, 0, 1])  # red and green: where the crop's corner was
    window = np.array([left, top, left + out.shape[1], top + out.shape[0]], np.float32)
    np.testing.assert_array_equal(out, image[top:window[3].astype(int), left:window[2].astype(int)])
    survivors = _box_ids(labels, out, out_boxes, out_labels)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    cropped = out.shape != image.shape
    inside = np.all((window[:2] < centres) & (centres < window[2:]), axis=1) if cropped else np.ones(len(boxes), bool)
    assert survivors == np.flatnonzero(inside).tolist()
    expected = np.clip(boxes[inside] - window[[0, 1, 0, 1]], 0, np.tile(out.shape[1::-1], 2))
    np.testing.assert_array_equal(out_boxes, expected)
    lowest = min(value for value in min_ious if value is not None)
    if cropped and lowest > 0:  # a kept object reaches the drawn min IoU
        kept = boxes[inside & (labels >= 0)]
        lower, upper = np.maximum(kept[:, :2], window[:2]), np.minimum(kept[:, 2:], window[2:])
        overlap = np.prod(upper - lower, axis=1)
        iou = overlap / (np.prod(kept[:, 2:] - kept[:, :2], axis=1) + np.prod(window[2:] - window[:2]) - overlap)
        assert iou.max() >= lowest - 1e-6


def test_crops_that_leave_every_box_give_an_image_without_boxes():
    image = np.zeros((64, 64, 3), np.uint8)
    boxes, labels = tf.constant([[0, 0, 4, 4], [60, 60, 64, 64]], tf.float32), tf.constant([0, -2])
    step = IoUCrop(min_ious=(0.0,), scale=(0.5, 0.5), aspect_ratio=(1.0, 1.0))
    emptied = 0
    for seed in range(12):
        out_image, out_boxes, out_labels = random_iou_crop(image, boxes, labels, _seed(seed), step)
        assert out_image.shape == (32, 32, 3)
        emptied += out_boxes.shape[0] == 0
        assert out_boxes.shape[0] == out_labels.shape[0]
    assert emptied >= 6  # a 32-pixel crop holds a corner box's centre in 2 of its 33 places along each side
    for seed in range(12):  # a minimum IoU needs an object in the crop: never emptied, the image kept instead
        out_image, out_boxes, _ = random_iou_crop(image, boxes, labels, _seed(seed), IoUCrop(min_ious=(0.5,)))
        assert out_boxes.shape[0] > 0


@CHEAP
@given(painted(), st.integers(0, 1000), st.sampled_from(["detectron", "torchvision"]))
def test_random_resize_scales_boxes_with_the_image(sample, seed, rule):
    image, boxes, labels = sample
    step = RandomResize(scale=(0.8, 2.0), probability=0.7)
    out_image, out_boxes = random_resize(
        tf.constant(image), tf.constant(boxes), _seed(seed), step,
        lambda pixels, factor: resize_image(pixels, 32 * factor, 96 * factor, rule),
    )
    out = out_image.numpy()
    scale = np.array(out.shape[1::-1] * 2, np.float32) / np.array(image.shape[1::-1] * 2, np.float32)
    np.testing.assert_allclose(out_boxes, boxes * scale, rtol=0.02)
    for index, (x1, y1, x2, y2) in enumerate(out_boxes.numpy()):  # pixels sampled well inside the box hold its blue
        inner = out[int(np.ceil(y1 + scale[1])):int(y2 - scale[1]), int(np.ceil(x1 + scale[0])):int(x2 - scale[0]), 2]
        np.testing.assert_allclose(inner, index + 2, atol=1e-3)


def test_photometric_distortion_changes_colours_within_range_never_boxes():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (12, 10, 3)), tf.uint8)
    boxes, labels = tf.constant([[1.0, 2.0, 5.0, 6.0]]), tf.constant([0])
    changed = augment(image, boxes, labels, (PhotometricDistortion(probability=1.0),), _seed(0), None, None)
    assert changed[0].dtype == tf.float32 and changed[0].shape == image.shape
    assert not np.array_equal(changed[0], tf.cast(image, tf.float32))
    assert 0 <= changed[0].numpy().min() and changed[0].numpy().max() <= 255
    np.testing.assert_array_equal(changed[1], boxes)
    np.testing.assert_array_equal(changed[2], labels)
    unchanged = photometric_distortion(image, _seed(0), PhotometricDistortion(probability=0.0))
    np.testing.assert_array_equal(unchanged, tf.cast(image, tf.float32))
    grey = tf.fill([4, 4, 3], 100.0)  # saturation and hue leave a grey image grey
    neutral = photometric_distortion(grey, _seed(3), PhotometricDistortion(1.0, brightness=(1, 1), contrast=(1, 1)))
    np.testing.assert_allclose(neutral, grey, atol=1e-3)


@pytest.mark.parametrize("step", FULL_LIST, ids=lambda step: step.type)
def test_every_step_takes_an_image_without_boxes(step):
    image, boxes, labels = tf.zeros([20, 30, 3], tf.uint8), tf.zeros([0, 4]), tf.zeros([0], tf.int32)
    resize = lambda pixels, factor: resize_image(pixels, 20 * factor, 40 * factor)  # noqa: E731
    out_image, out_boxes, out_labels = augment(image, boxes, labels, (step,), _seed(2), resize, padding_pixel())
    assert out_image.shape[-1] == 3 and out_boxes.shape == (0, 4) and out_labels.shape == (0,)


def test_full_list_is_deterministic_under_the_seed_whatever_the_parallelism():
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (40, 48, 3)), tf.uint8)
    element = {"image": image, "boxes": tf.constant([[4.0, 4.0, 20.0, 30.0], [30, 10, 44, 36], [0, 0, 8, 8]]),
               "labels": tf.constant([0, 0, GroundTruth.IGNORE_REGION])}

    def augmented(seed, calls):
        augment_element = _augmentation(DataConfig(min_size=40, max_size=64, size_divisor=32, seed=seed,
                                                   augmentation=FULL_LIST))
        elements = tf.data.Dataset.range(8).map(lambda index: (index, element))
        mapped = elements.map(lambda index, element: (index, augment_element(index, element)),
                              num_parallel_calls=calls, deterministic=False)
        return {int(index): (image.numpy(), target["boxes"].numpy(), target["labels"].numpy())
                for index, (image, target) in mapped}

    one, four = augmented(5, 1), augmented(5, 4)
    for index in range(8):
        for ours, theirs in zip(one[index], four[index]):
            np.testing.assert_array_equal(ours, theirs)
    assert len({one[index][0].shape for index in range(8)}) > 1  # the steps do change the images
    other = augmented(6, 2)
    assert any(one[index][0].shape != other[index][0].shape or not np.array_equal(one[index][0], other[index][0])
               for index in range(8))


def test_the_old_keys_give_the_batches_of_their_list(tmp_path):
    """`scale_jitter` and `horizontal_flip` are the list [resize, horizontal_flip]: the same batches, bit for bit."""
    path = str(tmp_path / "image.png")
    tf.io.write_file(path, tf.io.encode_png(tf.constant(np.random.default_rng(2).integers(0, 256, (30, 44, 3)),
                                                        tf.uint8)))
    dataset = DetectionDataset([ImageRecord(1, path, 30, 44, [[4, 4, 20, 25]], [0], [[30, 2, 40, 9]], [0])], ["box"],
                               [1], source=str(tmp_path))
    old = DataConfig(min_size=30, max_size=60, size_divisor=32, seed=4, scale_jitter=(0.7, 1.3))
    listed = DataConfig(min_size=30, max_size=60, size_divisor=32, seed=4,
                        augmentation=(RandomResize(scale=(0.7, 1.3)), HorizontalFlip()))
    for (old_images, old_targets), (images, targets) in zip(training_dataset(dataset, old, 1).take(4),
                                                            training_dataset(dataset, listed, 1).take(4)):
        np.testing.assert_array_equal(old_images, images)
        np.testing.assert_array_equal(old_targets["boxes"], targets["boxes"])


def test_draw_augmented_draws_what_the_training_pipeline_gives(tmp_path):
    from keras_retinanet.data.pictures import draw_augmented
    from keras_retinanet.visualization import class_colour

    records = [ImageRecord(1, str(tmp_path / "image.png"), 40, 48, [[4, 4, 20, 30]], [0], [[30, 10, 44, 36]], [0])]
    tf.io.write_file(records[0].path, tf.io.encode_png(tf.zeros([40, 48, 3], tf.uint8)))
    dataset = DetectionDataset(records, ["box"], [1], source=str(tmp_path))
    config = DataConfig(min_size=40, max_size=64, size_divisor=32, seed=2, augmentation=FULL_LIST)
    paths = draw_augmented(dataset, config, 3, str(tmp_path / "out"))
    assert [os.path.basename(path) for path in paths] == [f"augmented_000{index}.png" for index in range(3)]
    for path, (images, targets) in zip(paths, training_dataset(dataset, config, 1).take(3)):
        picture = np.asarray(Image.open(path))
        assert picture.shape == images.shape[1:]
        for (x1, y1, x2, y2), label in zip(targets["boxes"][0].numpy(), targets["labels"][0].numpy()):
            if label >= 0:  # the box's outline in its class colour at its top-left corner
                x, y = min(int(round(x1)), picture.shape[1] - 1), min(int(round(y1)), picture.shape[0] - 1)
                assert tuple(picture[y, x]) == class_colour(0), (path, x1, y1)


@pytest.mark.parametrize("override, message", [
    ("[{type: photometric}, {type: resize}, {type: iou_crop, min_ious: [0.5, 1.5]}]",
     "'data.augmentation[2].min_ious[1]' must be in [0, 1], got 1.5"),
    ("[{type: mosaic}]", "'data.augmentation[0].type' must be one of ('photometric', 'iou_crop', 'zoom_out', "
                         "'resize', 'horizontal_flip'), got 'mosaic'"),
    ("[{type: zoom_out, ratio: [3, 2]}]", "'data.augmentation[0].ratio' = (3.0, 2.0): holds the lowest and the "
                                          "highest value: the first must not exceed the second"),
    ("[{type: horizontal_flip, chance: 0.5}]", "unknown key 'data.augmentation[0].chance' (known keys here: "
                                               "probability, type)"),
    ("[{type: horizontal_flip, probability: 2}]", "'data.augmentation[0].probability' must be in [0, 1], got 2"),
    ("[{type: iou_crop, trials: 0.5}]", "'data.augmentation[0].trials' must be an integer, got 0.5"),
    ("{type: resize}", "'data.augmentation' must be a list of steps (mappings with a type), got {'type': 'resize'}"),
    ("[flip]", "'data.augmentation[0].type' must be one of"),
])
def test_bad_steps_are_named_by_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"data.augmentation={override}"])
    assert str(error.value).startswith(f"<defaults>: {message}"), str(error.value)


def test_the_old_keys_are_the_default_list_and_a_list_replaces_them():
    assert DataConfig().augmentation_steps() == (RandomResize(), HorizontalFlip())
    old = DataConfig(scale_jitter=(0.5, 1.5), horizontal_flip=False)
    assert old.augmentation_steps() == (RandomResize(scale=(0.5, 1.5)),)
    assert DataConfig(augmentation=(HorizontalFlip(),)).augmentation_steps() == (HorizontalFlip(), RandomResize())
    assert DataConfig(augmentation=()).augmentation_steps() == (RandomResize(),)
    for overrides, keys in [
        (["data.augmentation=[]", "data.scale_jitter=[0.5, 1]"], "'data.augmentation' = (), 'data.scale_jitter'"),
        (["data.augmentation=[{type: horizontal_flip}]", "data.horizontal_flip=false"], "'data.horizontal_flip'"),
        (["data.augmentation=[{type: resize}, {type: resize}]"], "holds at most one resize step"),
    ]:
        with pytest.raises(ConfigError, match=f"^<defaults>: .*{re.escape(keys)}"):
            load_config(None, overrides)
