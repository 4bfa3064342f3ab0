"""The synthetic shapes dataset: COCO layout, boxes that match the drawn pixels, determinism, validation, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from keras_retinanet.datasets import SHAPE_CLASSES, SHAPES, generate_shapes_dataset
from keras_retinanet.config import ConfigError
from keras_retinanet.datasets.shapes import PALETTE, render_shape_mask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HEIGHT, WIDTH = 96, 128  # not square, to catch swapped axes
SMALL = dict(image_size=(HEIGHT, WIDTH), min_objects=2, max_objects=6, min_size=10, max_size=32)


@pytest.fixture(scope="module")
def noisy_dataset(tmp_path_factory):
    """A small dataset with the default clutter and noise."""
    output_dir = str(tmp_path_factory.mktemp("noisy"))
    return output_dir, generate_shapes_dataset(output_dir, {"train": 8, "val": 3}, **SMALL)


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory):
    """No clutter, no noise: every object pixel has exactly its colour."""
    output_dir = str(tmp_path_factory.mktemp("clean"))
    return output_dir, generate_shapes_dataset(output_dir, {"train": 8}, clutter=False, noise_std=0.0, **SMALL)


def _objects(output_dir, annotation_path):
    """(COCO, [(RGB image array, [annotation, ...]), ...]) for a split."""
    coco = COCO(annotation_path)
    split = os.path.basename(annotation_path)[len("instances_") : -len(".json")]
    images = []
    for image_info in coco.loadImgs(coco.getImgIds()):
        pixels = np.asarray(Image.open(os.path.join(output_dir, split, image_info["file_name"])))
        images.append((pixels, coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"]))))
    return coco, images


def _outside_other_boxes(annotation, annotations):
    """Bool [h, w] over the annotation's box: pixels not covered by any other box of the image."""
    x, y, w, h = map(int, annotation["bbox"])
    free = np.ones((h, w), bool)
    for other in annotations:
        if other["id"] != annotation["id"]:
            ox, oy, ow, oh = map(int, other["bbox"])
            free[max(oy - y, 0) : max(oy + oh - y, 0), max(ox - x, 0) : max(ox + ow - x, 0)] = False
    return free


def test_coco_layout_counts_and_boxes_inside_images(noisy_dataset):
    output_dir, paths = noisy_dataset
    expected = {split: os.path.join(output_dir, "annotations", f"instances_{split}.json") for split in ("train", "val")}
    assert paths == expected
    for split, count in (("train", 8), ("val", 3)):
        with open(paths[split]) as file:
            raw = json.load(file)
        assert {"info", "licenses", "images", "annotations", "categories"} <= raw.keys()
        coco, images = _objects(output_dir, paths[split])
        assert sorted(coco.getImgIds()) == list(range(1, count + 1))
        assert [image["file_name"] for image in raw["images"]] == [f"{split}_{i:06d}.png" for i in range(count)]
        assert sorted(coco.getAnnIds()) == list(range(1, len(raw["annotations"]) + 1))
        assert len(raw["annotations"]) >= 2 * count
        for pixels, annotations in images:
            assert pixels.shape == (HEIGHT, WIDTH, 3) and pixels.dtype == np.uint8
            for annotation in annotations:
                x, y, w, h = annotation["bbox"]
                assert all(isinstance(v, float) and v == int(v) for v in annotation["bbox"])
                assert 0 <= x and 0 <= y and x + w <= WIDTH and y + h <= HEIGHT
                assert 10 <= w <= 32 and 10 <= h <= 32 and max(w / h, h / w) <= 1.25 + 0.1
                assert 0 < annotation["area"] <= w * h and annotation["iscrowd"] == 0


def test_categories_are_the_shape_names(noisy_dataset):
    _, paths = noisy_dataset
    assert len(SHAPE_CLASSES) >= 3 and len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)
    coco = COCO(paths["train"])
    assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == list(enumerate(SHAPE_CLASSES, 1))
    assert {a["category_id"] for a in coco.loadAnns(coco.getAnnIds())} <= set(range(1, len(SHAPE_CLASSES) + 1))


def test_shape_masks_are_tight_and_distinct():
    for shape in SHAPES:
        for width in range(4, 70, 3):
            for height in range(4, 70, 5):
                mask = render_shape_mask(shape, width, height)
                assert mask.shape == (height, width)
                touches = mask[0].any(), mask[-1].any(), mask[:, 0].any(), mask[:, -1].any()
                assert all(touches), (shape, width, height)
    masks = [render_shape_mask(shape, 24, 24) for shape in SHAPES]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            # A hexagon is the closest to a circle: 9 % of a 24 x 24 box differs.
            least = 0.08 if {SHAPES[i], SHAPES[j]} == {"circle", "hexagon"} else 0.1
            assert (masks[i] != masks[j]).mean() > least, (SHAPES[i], SHAPES[j])
    with pytest.raises(ValueError, match="hexagon"):
        render_shape_mask("pentagon", 10, 10)


def test_other_class_lists_name_their_categories_in_order(tmp_path):
    classes = ("square", "star", "hexagon")
    path = generate_shapes_dataset(str(tmp_path), splits={"train": 6}, image_size=(64, 64), max_size=24,
                                   classes=classes)["train"]
    dataset = json.loads(open(path).read())
    assert [(c["id"], c["name"]) for c in dataset["categories"]] == [(1, "square"), (2, "star"), (3, "hexagon")]
    assert {a["category_id"] for a in dataset["annotations"]} == {1, 2, 3}
    for bad in ((), ("square", "square"), ("square", "oval")):
        with pytest.raises(ConfigError, match="classes must be distinct names"):
            generate_shapes_dataset(str(tmp_path), splits={"x": 1}, classes=bad)


def test_boxes_match_the_drawn_pixels_exactly(clean_dataset):
    """Without noise or clutter, the class's shape re-rendered into the box has one palette colour, its pixel count
    is the area, and every pixel just outside the box (not in another box) is background of another colour."""
    output_dir, paths = clean_dataset
    coco, images = _objects(output_dir, paths["train"])
    for pixels, annotations in images:
        for annotation in annotations:
            x, y, w, h = map(int, annotation["bbox"])
            mask = render_shape_mask(coco.loadCats(annotation["category_id"])[0]["name"], w, h)
            assert annotation["area"] == mask.sum()
            free = _outside_other_boxes(annotation, annotations)
            inside = pixels[y : y + h, x : x + w][mask & free].astype(int)
            assert len(inside) > 0
            colour = inside[0]
            assert (inside == colour).all() and tuple(colour) in PALETTE
            padded = np.zeros((HEIGHT + 2, WIDTH + 2), bool)
            padded[y : y + h + 2, x : x + w + 2] = True
            padded[y + 1 : y + h + 1, x + 1 : x + w + 1] = False
            for other in annotations:
                ox, oy, ow, oh = map(int, other["bbox"])
                padded[oy + 1 : oy + oh + 1, ox + 1 : ox + ow + 1] = False
            ring = pixels[padded[1:-1, 1:-1]].astype(int)
            assert np.linalg.norm(ring - colour, axis=1).min() > 100


def test_boxes_match_the_drawn_pixels_with_noise_and_clutter(noisy_dataset):
    """With noise (std 8) and clutter, the pixels of the re-rendered shape are one colour plus that noise: a box one
    pixel off would take in background pixels 130+ away and raise their spread far above the noise's."""
    output_dir, paths = noisy_dataset
    coco, images = _objects(output_dir, paths["train"])
    for pixels, annotations in images:
        for annotation in annotations:
            x, y, w, h = map(int, annotation["bbox"])
            mask = render_shape_mask(coco.loadCats(annotation["category_id"])[0]["name"], w, h)
            inside = pixels[y : y + h, x : x + w][mask & _outside_other_boxes(annotation, annotations)]
            assert 4 < inside.astype(float).std(axis=0).max() < 12
            shifted = pixels[y + 1 : y + h + 1, x : x + w] if y + h < HEIGHT else pixels[y - 1 : y + h - 1, x : x + w]
            assert shifted[mask].astype(float).std(axis=0).max() > 12


def test_clutter_is_drawn_and_unlabelled(tmp_path):
    """Outside every box the background is dark (channels <= 100); only clutter puts bright pixels there."""
    bright_outside = {}
    for clutter in (False, True):
        output_dir = str(tmp_path / str(clutter))
        paths = generate_shapes_dataset(output_dir, {"train": 4}, clutter=clutter, noise_std=0.0, **SMALL)
        _, images = _objects(output_dir, paths["train"])
        count = 0
        for pixels, annotations in images:
            outside = np.ones((HEIGHT, WIDTH), bool)
            for annotation in annotations:
                x, y, w, h = map(int, annotation["bbox"])
                outside[y : y + h, x : x + w] = False
            count += int((pixels[outside].max(axis=1) > 200).sum())
        bright_outside[clutter] = count
    assert bright_outside[False] == 0 and bright_outside[True] > 50


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    def write(name, seed):
        output_dir = tmp_path / name
        generate_shapes_dataset(str(output_dir), {"train": 2, "val": 1}, image_size=(64, 64), min_size=8,
                                max_size=24, seed=seed)
        return {str(p.relative_to(output_dir)): p.read_bytes() for p in sorted(output_dir.rglob("*")) if p.is_file()}

    first, again, other = write("a", 0), write("b", 0), write("c", 1)
    assert len(first) == 5 and first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name.endswith(".png"))
    assert first["annotations/instances_train.json"] != other["annotations/instances_train.json"]
    assert first["train/train_000000.png"] != first["val/val_000000.png"]


def test_images_without_objects_are_listed(tmp_path):
    paths = generate_shapes_dataset(str(tmp_path), {"val": 2}, image_size=(64, 64), min_objects=0, max_objects=0,
                                    min_size=8, max_size=24)
    coco = COCO(paths["val"])
    assert len(coco.getImgIds()) == 2 and coco.getAnnIds() == []


def test_foreground_is_rare(tmp_path):
    """With the defaults (256 x 256, 2-8 shapes of 16-64 pixels) boxes cover about 14% of an image on average
    (expected 5 x 1,792 / 65,536); the bound is 25% on average and 50% for any image."""
    paths = generate_shapes_dataset(str(tmp_path), {"train": 16}, clutter=False, noise_std=0.0)
    coco = COCO(paths["train"])
    fractions = [sum(a["bbox"][2] * a["bbox"][3] for a in coco.loadAnns(coco.getAnnIds(imgIds=i))) / 256**2
                 for i in coco.getImgIds()]
    assert 0.02 < np.mean(fractions) < 0.25 and max(fractions) < 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(splits={"train": 0}), r"splits\['train'\].*got 0"),
        (dict(splits={}), "splits"),
        (dict(splits={"a/b": 1}), "split names"),
        (dict(min_size=40, max_size=20), "max_size.*got 20"),
        (dict(min_size=2, max_size=20), "min_size.*got 2"),
        (dict(max_size=300), r"max_size must fit.*got 300"),
        (dict(image_size=(64,)), "image_size"),
        (dict(image_size=(64, -1)), "image_size"),
        (dict(min_objects=-1), "min_objects.*got -1"),
        (dict(min_objects=5, max_objects=3), "max_objects.*got 3"),
        (dict(seed=-3), "seed.*got -3"),
        (dict(noise_std=-1.0), "noise_std.*got -1.0"),
    ],
)
def test_invalid_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_shapes_dataset(str(tmp_path), **kwargs)
    assert not os.path.exists(tmp_path / "annotations")


def test_command_line_writes_a_dataset(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "bin", "generate_shapes"), f"--output_dir={tmp_path}",
               "--train_images=3", "--val_images=2", "--image_size=64", "--min_size=8", "--max_size=24", "--seed=5"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr
    for split, count in (("train", 3), ("val", 2)):
        with open(tmp_path / "annotations" / f"instances_{split}.json") as file:
            dataset = json.load(file)
        assert len(dataset["images"]) == count
        assert dataset["info"]["parameters"]["seed"] == 5
        assert f"{split}: {count} images, {len(dataset['annotations'])} boxes" in result.stdout
        assert Image.open(tmp_path / split / f"{split}_000000.png").size == (64, 64)


def test_command_line_imbalance_preset(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "bin", "generate_shapes"), f"--output_dir={tmp_path}",
               "--train_images=6", "--val_images=0", "--imbalance"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    coco = COCO(str(tmp_path / "annotations" / "instances_train.json"))
    assert all((image["height"], image["width"]) == (256, 256) for image in coco.dataset["images"])
    counts = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert all(1 <= count <= 3 for count in counts)
    assert all(12 <= size <= 32 for annotation in coco.dataset["annotations"] for size in annotation["bbox"][2:])

    mixed = subprocess.run([*command, "--image_size=64"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": ROOT})
    assert mixed.returncode != 0 and "--imbalance sets image_size: give one or the other" in mixed.stderr
