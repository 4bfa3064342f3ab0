"""The tf.data input pipeline: resizing, flipping, padding, determinism and batching of ground truth."""

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.config import DataConfig
from keras_retinanet.data import DetectionDataset, ImageRecord
from keras_retinanet.data.pipeline import inference_dataset, to_original_coordinates, training_dataset


def _dataset(tmp_path, sizes=((60, 90), (40, 40)), boxes=None):
    """Black images with a white rectangle per box, as a DetectionDataset."""
    records = []
    for index, (height, width) in enumerate(sizes):
        image_boxes = np.array(boxes[index] if boxes else [[10, 5, 30, 25]], np.float32).reshape(-1, 4)
        pixels = np.zeros((height, width, 3), np.uint8)
        for x1, y1, x2, y2 in image_boxes.astype(int):
            pixels[y1:y2, x1:x2] = 255
        path = str(tmp_path / f"image{index}.png")
        Image.fromarray(pixels).save(path)
        records.append(ImageRecord(index + 1, path, height, width, image_boxes, np.zeros(len(image_boxes)),
                                   np.zeros((0, 4))))
    return DetectionDataset(records, ["box"], [1], source=str(tmp_path))


def _box_of_white_pixels(image):
    ys, xs = np.nonzero(image[..., 0] > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("cache_images", [False, True])
def test_resize_flip_and_padding_keep_boxes_on_their_pixels(tmp_path, cache_images):
    dataset = _dataset(tmp_path, sizes=((60, 90),))
    config = DataConfig(min_size=120, max_size=1000, horizontal_flip=True, max_boxes=4, seed=3,
                        cache_images=cache_images)
    flips = 0
    for images, targets in training_dataset(dataset, config, batch_size=1).take(8):
        image, box = images[0].numpy(), targets["boxes"][0, 0].numpy()
        assert image.shape == (128, 256, 3)  # 120 x 180 padded to multiples of 128
        np.testing.assert_allclose(_box_of_white_pixels(image), box, atol=1.0)
        assert targets["labels"][0].numpy().tolist() == [0, -1, -1, -1]
        flips += box[0] > 90  # the flipped box sits on the right: 180 - 60 = 120
    assert 0 < flips < 8


def test_longer_side_cap_and_scale_jitter(tmp_path):
    dataset = _dataset(tmp_path, sizes=((50, 200),))
    config = DataConfig(min_size=100, max_size=300, horizontal_flip=False, max_boxes=2)
    images, targets = next(iter(training_dataset(dataset, config, batch_size=1)))
    # Shorter side 100 would make the longer 400 > 300: the scale is 300 / 200 = 1.5 -> 75 x 300, padded.
    assert images.shape == (1, 128, 384, 3)
    np.testing.assert_allclose(targets["boxes"][0, 0], [15, 7.5, 45, 37.5], atol=1e-4)
    jittered = DataConfig(min_size=100, max_size=1000, scale_jitter=(0.5, 1.5), horizontal_flip=False, max_boxes=2)
    widths = {int(b["boxes"][0, 0, 2] - b["boxes"][0, 0, 0]) for _, b in training_dataset(dataset, jittered, 1).take(6)}
    assert len(widths) > 1


def test_same_seed_same_batches_and_negatives_kept(tmp_path):
    dataset = _dataset(tmp_path, sizes=((40, 40), (40, 40), (40, 40)), boxes=[[[1, 1, 20, 20]], [], [[5, 5, 9, 9]]])
    config = DataConfig(min_size=64, max_size=64, scale_jitter=(0.8, 1.2), max_boxes=3, seed=7)
    pipeline = training_dataset(dataset, config, 3)
    first = [t["labels"].numpy() for _, t in pipeline.take(4)]
    again = [t["labels"].numpy() for _, t in pipeline.take(4)]  # a second iterator of the same dataset
    rebuilt = [t["labels"].numpy() for _, t in training_dataset(dataset, config, 3).take(4)]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, rebuilt)
    other_seed = [t["labels"].numpy() for _, t in training_dataset(dataset, DataConfig(
        min_size=64, max_size=64, max_boxes=3, seed=8), 3).take(4)]
    assert not np.array_equal(first, other_seed)
    # The image without boxes comes through as a negative (all labels -1), once per pass over the data.
    rows = np.concatenate(first)
    assert ((rows == -1).all(axis=1)).sum() == 4


def test_ignore_regions_and_max_boxes(tmp_path):
    dataset = _dataset(tmp_path, sizes=((40, 40),))
    record = dataset.records[0]
    dataset.records[0] = ImageRecord(1, record.path, 40, 40, record.boxes, record.labels, [[0, 0, 8, 8]], [0])
    config = DataConfig(min_size=40, max_size=40, horizontal_flip=False, max_boxes=3)
    _, targets = next(iter(training_dataset(dataset, config, 1)))
    assert targets["labels"][0].numpy().tolist() == [0, -2, -1]
    with pytest.raises(ValueError, match="more than data.max_boxes=1"):
        training_dataset(dataset, DataConfig(max_boxes=1), 1)


def test_inference_batches_map_back_to_original_pixels(tmp_path):
    dataset = _dataset(tmp_path)
    paths = [r.path for r in dataset.records]
    batches = list(inference_dataset(paths, DataConfig(min_size=100, max_size=1000), batch_size=2))
    assert len(batches) == 1
    images, info = batches[0]
    assert images.shape == (2, 128, 256, 3)  # 100 x 150 and 100 x 100, padded to the batch's 128 multiples
    np.testing.assert_allclose(info["scale"], [[100 / 60, 100 / 60], [2.5, 2.5]], rtol=1e-6)
    resized_box = np.array([[[10, 5, 30, 25]], [[10, 5, 30, 25]]], np.float32) * np.array([100 / 60, 2.5])[:, None, None]
    original = to_original_coordinates(resized_box, info["scale"].numpy(), info["original_size"].numpy())
    np.testing.assert_allclose(original, [[[10, 5, 30, 25]], [[10, 5, 30, 25]]], atol=1e-4)


def test_torchvision_preprocessing_floors_sizes_and_pads_with_the_mean_pixel(tmp_path):
    """torchvision's rule: new side = floor(side * scale) (42.75 -> 42, not 43); padding is 0 after the "torch"
    normalisation, i.e. the ImageNet mean pixel before it."""
    dataset = _dataset(tmp_path, sizes=((40, 57),))
    detectron = DataConfig(min_size=30, max_size=1000, size_divisor=32)
    torchvision = DataConfig(min_size=30, max_size=1000, size_divisor=32, preprocessing="torchvision")
    (image, info), = [(images[0].numpy(), info) for images, info in inference_dataset(dataset, torchvision, 1)]
    assert image.shape == (32, 64, 3)
    np.testing.assert_allclose(info["scale"][0], [30 / 40, 42 / 57], rtol=1e-6)
    np.testing.assert_allclose(image[30:, :], np.broadcast_to([123.675, 116.28, 103.53], (2, 64, 3)), rtol=1e-6)
    np.testing.assert_allclose(image[:30, 42:], np.broadcast_to([123.675, 116.28, 103.53], (30, 22, 3)), rtol=1e-6)
    (image, info), = [(images[0].numpy(), info) for images, info in inference_dataset(dataset, detectron, 1)]
    np.testing.assert_allclose(info["scale"][0], [30 / 40, 43 / 57], rtol=1e-6)
    assert np.all(image[30:] == 0)


def test_torchvision_batches_pad_every_image_with_the_mean_pixel(tmp_path):
    dataset = _dataset(tmp_path, sizes=((40, 57), (40, 120)))
    config = DataConfig(min_size=30, max_size=1000, size_divisor=32, preprocessing="torchvision",
                        horizontal_flip=False, max_boxes=2)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    images, info = next(iter(inference_dataset(dataset, config, 2)))
    assert images.shape == (2, 32, 96, 3) and info["image_size"].numpy().tolist() == [[30, 42], [30, 90]]
    np.testing.assert_allclose(images[0, :, 42:], np.broadcast_to(mean, (32, 54, 3)), rtol=1e-6)
    np.testing.assert_allclose(images[1, 30:], np.broadcast_to(mean, (2, 96, 3)), rtol=1e-6)
    images, _ = next(iter(training_dataset(dataset, config, 2)))
    assert images.shape == (2, 32, 96, 3)
    mean_columns = [int(np.all(np.abs(image - mean) < 1e-3, axis=(0, 2)).sum()) for image in images.numpy()]
    assert sorted(mean_columns) == [96 - 90, 96 - 42]  # training batches pad with the mean pixel too
