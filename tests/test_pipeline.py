"""The tf.data input pipeline: decoding, resizing, flipping, padding, determinism and batching of ground truth."""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.config import DataConfig
from keras_retinanet.data import DataError, DetectionDataset, ImageRecord
from keras_retinanet.data.pipeline import (
    decode_pixels,
    inference_dataset,
    load_images,
    needed_max_boxes,
    preprocess_image,
    resize_image,
    resized_size,
    to_original_coordinates,
    training_dataset,
)

RACCOON_IMAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "raccoon", "images")

# ((height, width), min_size, max_size) -> (height, width) as torchvision 0.29's GeneralizedRCNNTransform resizes
# in eager mode (computed with it; tests/test_torchvision.py checks the rule against it live). Many are sizes where
# a float32 scale gives one pixel less (288 x 460 -> 799 x 1277) or more (791 x 780 -> 811 x 800).
TORCHVISION_SIZES = {
    ((288, 460), 800, 1333): (800, 1277), ((460, 288), 800, 1333): (1277, 800), ((375, 500), 800, 1333): (800, 1066),
    ((427, 640), 800, 1333): (800, 1199), ((333, 500), 800, 1333): (800, 1201), ((1200, 1600), 800, 1333): (800, 1066),
    ((791, 780), 800, 1333): (811, 799), ((420, 318), 800, 1333): (1056, 800), ((1170, 588), 800, 1333): (1333, 669),
    ((617, 1286), 800, 1333): (639, 1333), ((1593, 1738), 800, 1333): (800, 872), ((1311, 853), 800, 1333): (1229, 800),
    ((2308, 428), 800, 1333): (1333, 247), ((398, 1649), 800, 1333): (321, 1333), ((924, 993), 800, 1333): (800, 859),
    ((383, 549), 800, 1333): (800, 1146), ((980, 897), 800, 1333): (874, 800), ((266, 109), 800, 1333): (1333, 546),
    ((165, 2496), 800, 1333): (88, 1333), ((1, 1), 800, 1333): (800, 800), ((17, 3000), 800, 1333): (7, 1333),
    ((288, 460), 600, 1000): (600, 958), ((375, 500), 600, 1000): (600, 800), ((427, 640), 600, 1000): (600, 899),
    ((333, 500), 600, 1000): (600, 900), ((1200, 1600), 600, 1000): (600, 800), ((791, 780), 600, 1000): (608, 600),
    ((420, 318), 600, 1000): (792, 600), ((1170, 588), 600, 1000): (1000, 502), ((617, 1286), 600, 1000): (479, 1000),
    ((2308, 428), 600, 1000): (1000, 185), ((398, 1649), 600, 1000): (241, 999), ((266, 109), 600, 1000): (1000, 409),
    ((165, 2496), 600, 1000): (66, 1000), ((17, 3000), 600, 1000): (5, 1000),
}


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
    expected = (f"{record.path} (image 1 of {tmp_path}): 2 boxes (ignore regions included), more than "
                "data.max_boxes=1; set data.max_boxes to 2 or more, or leave it out (null) to take what the data "
                "needs")
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        training_dataset(dataset, DataConfig(max_boxes=1), 1)


@pytest.mark.parametrize(("counts", "rows"), [((0, 0), 8), ((1, 3), 8), ((8, 2), 8), ((9,), 16), ((30, 1), 32)])
def test_max_boxes_left_out_pads_to_the_most_crowded_image_rounded_up_to_8(tmp_path, counts, rows):
    """`data.max_boxes: null` (the default) takes the training split's most boxes (ignore regions count), rounded up
    to a multiple of 8: every box of every image reaches the batch, none is cut."""
    boxes = [[[x, x, x + 3, x + 3] for x in range(count)] for count in counts]
    dataset = _dataset(tmp_path, sizes=((40, 48),) * len(counts), boxes=boxes)
    assert DataConfig().max_boxes is None and needed_max_boxes(dataset) == rows
    config = DataConfig(min_size=40, max_size=48, horizontal_flip=False)
    _, targets = next(iter(training_dataset(dataset, config, len(counts))))
    assert targets["labels"].shape == (len(counts), rows)
    assert sorted((targets["labels"].numpy() >= 0).sum(axis=1).tolist()) == sorted(counts)
    with pytest.raises(DataError, match="the training set has no images"):
        needed_max_boxes(DetectionDataset([], ["box"], [1], source="empty"))


def test_inference_batches_map_back_to_original_pixels(tmp_path):
    dataset = _dataset(tmp_path)
    paths = [r.path for r in dataset.records]
    batches = list(inference_dataset(paths, DataConfig(min_size=100, max_size=1000), batch_size=2))
    assert len(batches) == 1
    images, info = batches[0]
    assert images.shape == (2, 128, 256, 3)  # 100 x 150 and 100 x 100, padded to the batch's 128 multiples
    np.testing.assert_allclose(info["scale"], [[100 / 60, 100 / 60], [2.5, 2.5]], rtol=1e-6)
    scales = np.array([100 / 60, 2.5])[:, None, None]
    resized_box = np.array([[[10, 5, 30, 25]], [[10, 5, 30, 25]]], np.float32) * scales
    original = to_original_coordinates(resized_box, info["scale"].numpy(), info["original_size"].numpy())
    np.testing.assert_allclose(original, [[[10, 5, 30, 25]], [[10, 5, 30, 25]]], atol=1e-4)


def test_torchvision_preprocessing_floors_sizes_and_pads_with_the_mean_pixel(tmp_path):
    """torchvision's rule: new side = floor(side * scale) (42.75 -> 42, not 43); padding is 0 after the "torch"
    normalisation, i.e. the ImageNet mean pixel before it."""
    dataset = _dataset(tmp_path, sizes=((40, 57),))
    detectron = DataConfig(min_size=30, max_size=1000, size_divisor=32)
    torchvision = DataConfig(min_size=30, max_size=1000, size_divisor=32, resize_rule="torchvision")
    (image, info), = [(images[0].numpy(), info) for images, info in inference_dataset(dataset, torchvision, 1)]
    assert image.shape == (32, 64, 3)
    np.testing.assert_allclose(info["scale"][0], [30 / 40, 42 / 57], rtol=1e-6)
    np.testing.assert_allclose(image[30:, :], np.broadcast_to([123.675, 116.28, 103.53], (2, 64, 3)), rtol=1e-6)
    np.testing.assert_allclose(image[:30, 42:], np.broadcast_to([123.675, 116.28, 103.53], (30, 22, 3)), rtol=1e-6)
    (image, info), = [(images[0].numpy(), info) for images, info in inference_dataset(dataset, detectron, 1)]
    assert info["content_size"][0].numpy().tolist() == [30, 43]  # 42.75 rounded
    np.testing.assert_allclose(info["scale"][0], [30 / 40, 30 / 40], rtol=1e-6)  # Detectron's one factor
    assert np.all(image[30:] == 0)


def test_torchvision_batches_pad_every_image_with_the_mean_pixel(tmp_path):
    dataset = _dataset(tmp_path, sizes=((40, 57), (40, 120)))
    config = DataConfig(min_size=30, max_size=1000, size_divisor=32, resize_rule="torchvision",
                        horizontal_flip=False, max_boxes=2)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    images, info = next(iter(inference_dataset(dataset, config, 2)))
    assert images.shape == (2, 32, 96, 3) and info["content_size"].numpy().tolist() == [[30, 42], [30, 90]]
    np.testing.assert_allclose(images[0, :, 42:], np.broadcast_to(mean, (32, 54, 3)), rtol=1e-6)
    np.testing.assert_allclose(images[1, 30:], np.broadcast_to(mean, (2, 96, 3)), rtol=1e-6)
    images, _ = next(iter(training_dataset(dataset, config, 2)))
    assert images.shape == (2, 32, 96, 3)
    mean_columns = [int(np.all(np.abs(image - mean) < 1e-3, axis=(0, 2)).sum()) for image in images.numpy()]
    assert sorted(mean_columns) == [96 - 90, 96 - 42]  # training batches pad with the mean pixel too


@pytest.mark.parametrize("resize_rule", ["detectron", "torchvision"])
def test_one_preprocessing_gives_each_image_what_the_batches_give_it(tmp_path, resize_rule):
    """`preprocess_image` is the network input of `inference_dataset`, image by image (odd sizes: rounding up and
    down, portrait and landscape, one side capped by max_size), with its scale and content size."""
    sizes = ((37, 53), (53, 37), (41, 41), (13, 97))
    dataset = _dataset(tmp_path, sizes=sizes, boxes=[[[2, 3, 9, 11]]] * len(sizes))
    config = DataConfig(min_size=45, max_size=150, size_divisor=32, resize_rule=resize_rule)
    batches = list(inference_dataset(dataset, config, 1))
    for image, (batch, info) in zip(load_images(dataset), batches):
        model_input, scale, content_size = preprocess_image(image, config)
        np.testing.assert_array_equal(model_input.numpy(), batch[0].numpy())
        np.testing.assert_array_equal(scale.numpy(), info["scale"][0].numpy())
        assert content_size.numpy().tolist() == info["content_size"][0].numpy().tolist()
        assert [side % 32 for side in model_input.shape[:2]] == [0, 0]
        assert all(0 < content <= padded < content + 32
                   for content, padded in zip(content_size.numpy(), model_input.shape[:2]))
    assert [info["content_size"][0].numpy().tolist() for _, info in batches][3][1] == 150  # 97 * 45 / 13 > 150


@pytest.mark.parametrize("case", sorted(TORCHVISION_SIZES))
def test_torchvision_size_rule_is_eager_torchvisions(case):
    (height, width), min_size, max_size = case
    size = resized_size([height, width], min_size, max_size, "torchvision").numpy()
    assert tuple(int(side) for side in size) == TORCHVISION_SIZES[case]
    resized, scale = resize_image(np.zeros((height, width, 3), np.uint8), min_size, max_size, "torchvision")
    assert resized.shape[:2] == TORCHVISION_SIZES[case]
    np.testing.assert_allclose(scale, np.array(TORCHVISION_SIZES[case]) / [height, width], rtol=1e-6)


def detectron_size(height, width, target_size, max_size):
    """Detectron's `prep_im_for_blob` in float64, as written there, with OpenCV's rounding of the new size
    (`cv2.resize(im, None, fx=scale, fy=scale)` rounds half to even); a side that would round to 0 (OpenCV's error)
    keeps one pixel."""
    im_scale = float(target_size) / float(min(height, width))
    if np.round(im_scale * max(height, width)) > max_size:
        im_scale = float(max_size) / float(max(height, width))
    return max(1, int(np.round(height * im_scale))), max(1, int(np.round(width * im_scale)))


def test_detectron_size_rule_is_detectrons():
    rng = np.random.default_rng(0)
    sizes = [tuple(size) for size in rng.integers(1, 3000, size=(400, 2))]
    # The longer side lands just over max_size and rounds to it: Detectron keeps the min_size scale (800 x 1333),
    # where min(800 / 600, 1333 / 1000) would make the shorter side 799.8 -> 800 by another scale.
    sizes += [(600, 1000), (1000, 600), (375, 625), (3, 5), (288, 460), (791, 780), (1200, 1600), (6, 10)]
    for min_size, max_size in ((800, 1333), (600, 1000), (128, 256)):
        for height, width in sizes:
            size = resized_size([height, width], min_size, max_size, "detectron").numpy()
            expected = detectron_size(height, width, min_size, max_size)
            assert tuple(int(side) for side in size) == expected, (height, width, min_size, max_size)


def opencv_linear_resize(image, scale, new_size):
    """OpenCV's `cv2.resize(image, None, fx=scale, fy=scale, interpolation=INTER_LINEAR)` on a float image, after
    its algorithm: destination pixel x samples the source at (x + 0.5) / scale - 0.5, the two neighbours weighted
    linearly, positions clamped to the border."""
    def taps(new, old):
        position = (np.arange(new) + 0.5) / scale - 0.5
        low = np.floor(position)
        weight = position - low
        weight[low < 0] = 0.0
        low = np.clip(low, 0, old - 1).astype(int)
        return low, np.minimum(low + 1, old - 1), weight
    top, bottom, wy = taps(new_size[0], image.shape[0])
    left, right, wx = taps(new_size[1], image.shape[1])
    rows = image[top] * (1 - wy)[:, None, None] + image[bottom] * wy[:, None, None]
    return rows[:, left] * (1 - wx)[None, :, None] + rows[:, right] * wx[None, :, None]


@pytest.mark.parametrize("size", [(288, 460), (375, 500), (1200, 1601), (61, 3000)])
def test_detectron_resize_samples_as_detectrons_opencv_call(size):
    """Pixels by the scale factor, not by the ratio of the rounded sizes (up to tens of levels apart on photos)."""
    image = np.random.default_rng(0).uniform(0, 255, (*size, 3)).astype(np.float32)
    resized, scale = resize_image(image, 800, 1333, "detectron")
    factor = float(scale[0])
    assert float(scale[1]) == factor
    expected = opencv_linear_resize(image.astype(np.float64), factor, resized.shape[:2])
    assert resized.shape[:2] == detectron_size(*size, 800, 1333)
    # TensorFlow places samples in float32: 2e-4 px off at x = 3000, which this noise (steps up to 255 levels
    # between neighbours) turns into 0.05 levels; sampling by the size ratio instead is tens of levels off.
    np.testing.assert_allclose(resized, expected, atol=0.1)


def jpeg_variants():
    """Encoded JPEGs as cameras and editors write them: the vendored photos (one grayscale), and one of them
    re-encoded at odd sizes with 4:2:0, 4:2:2 and 4:4:4 chroma subsampling, progressive and at low quality."""
    files = {name: open(os.path.join(RACCOON_IMAGES, name), "rb").read() for name in sorted(os.listdir(RACCOON_IMAGES))}
    photo = Image.open(os.path.join(RACCOON_IMAGES, "raccoon-63.jpg")).convert("RGB")
    for index, (size, options) in enumerate([
        ((459, 287), {"subsampling": 2, "quality": 90}),
        ((333, 501), {"subsampling": 1, "quality": 95}),
        ((641, 427), {"subsampling": 0, "quality": 75}),
        ((127, 93), {"progressive": True, "quality": 85}),
        ((1601, 1199), {"quality": 30}),
    ]):
        stream = io.BytesIO()
        photo.resize(size, Image.BILINEAR).save(stream, format="JPEG", **options)
        files[f"variant{index}.jpg"] = stream.getvalue()
    return files


def test_jpegs_decode_to_the_pixels_pil_gives():
    """The accurate integer IDCT (PIL's, OpenCV's and torchvision.io's), not `tf.io.decode_image`'s fast one."""
    for name, encoded in jpeg_variants().items():
        expected = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        np.testing.assert_array_equal(decode_pixels(encoded).numpy(), expected, err_msg=name)


def test_training_and_inference_batches_hold_the_accurately_decoded_pixels(tmp_path):
    encoded = jpeg_variants()["variant0.jpg"]
    path = str(tmp_path / "photo.jpg")
    with open(path, "wb") as stream:
        stream.write(encoded)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    height, width = pixels.shape[:2]
    config = DataConfig(min_size=height, max_size=10 * width, size_divisor=1, horizontal_flip=False, max_boxes=1)
    (loaded,) = load_images([path])
    np.testing.assert_array_equal(loaded, pixels)
    images, _ = next(iter(inference_dataset([path], config, 1)))
    np.testing.assert_allclose(images[0], pixels, atol=1e-3)  # no resizing at min_size = height: the pixels as such
    record = ImageRecord(1, path, height, width, np.array([[1, 1, 9, 9]], np.float32), np.zeros(1), np.zeros((0, 4)))
    images, _ = next(iter(training_dataset(DetectionDataset([record], ["a"], [1], source=path), config, 1)))
    np.testing.assert_allclose(images[0], pixels, atol=1e-3)
