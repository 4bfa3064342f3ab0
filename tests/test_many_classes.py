"""Shapes datasets whose classes are colour and shape (`generate_shapes_dataset(colours=N)`): many classes, for the
paper's easy-negative mass per object; each object in its class's colour, told apart from the others under noise."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.config import ConfigError
from keras_retinanet.datasets import COLOURS, SHAPE_CLASSES, SHAPES, generate_shapes_dataset
from keras_retinanet.datasets.shapes import BACKGROUND_RANGE, render_shape_mask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(image_size=(96, 128), min_objects=3, max_objects=6, min_size=12, max_size=32)


def _read(output_dir, split):
    with open(os.path.join(output_dir, "annotations", f"instances_{split}.json")) as file:
        return json.load(file)


def test_the_named_colours_stand_apart_from_each_other_and_the_background():
    """Each pair differs by 100 or more in some channel (12 standard deviations of the default noise of 8), and
    each colour exceeds the brightest background by 140 in some channel."""
    values = list(COLOURS.values())
    assert len(values) == len(set(values)) == 19
    for a, b in itertools.combinations(values, 2):
        assert np.abs(np.subtract(a, b)).max() >= 100, (a, b)
    assert all(max(colour) - BACKGROUND_RANGE[1] >= 140 for colour in values)


def test_classes_are_each_colour_with_each_shape(tmp_path):
    path = generate_shapes_dataset(str(tmp_path), {"train": 2}, colours=10, classes=SHAPES, **SMALL)["train"]
    dataset = json.loads(open(path).read())
    categories = dataset["categories"]
    assert len(categories) == 60 and [c["id"] for c in categories] == list(range(1, 61))
    assert [c["name"] for c in categories[:7]] == [f"red {shape}" for shape in SHAPES] + ["green circle"]
    assert categories[-1]["name"] == "violet hexagon"
    for category in categories:
        colour, shape = category["name"].rsplit(" ", 1)
        assert category["shape"] == shape and category["colour"] == list(COLOURS[colour])
    assert len({c["name"] for c in categories}) == 60
    assert dataset["info"]["parameters"]["colours"] == 10

    names = [c["name"] for c in json.loads(open(generate_shapes_dataset(
        str(tmp_path / "default_shapes"), {"train": 1}, colours=3, **SMALL)["train"]).read())["categories"]]
    assert names == [f"{colour} {shape}" for colour in ("red", "green", "blue") for shape in SHAPE_CLASSES]


def test_each_object_has_its_classes_colour_within_the_noise(tmp_path):
    """All 19 colours and 6 shapes (114 classes), with clutter in the same colours and the default noise: the
    pixels of each object's shape (where no other box covers them) average within 6 of its class's colour, whose
    nearest named colour it is by far, with the noise's spread."""
    generate_shapes_dataset(str(tmp_path), {"train": 12}, colours=19, classes=SHAPES, **SMALL)
    dataset = _read(str(tmp_path), "train")
    categories = {c["id"]: c for c in dataset["categories"]}
    palette = np.array(list(COLOURS.values()), float)
    checked = set()
    for image in dataset["images"]:
        pixels = np.asarray(Image.open(tmp_path / "train" / image["file_name"])).astype(float)
        annotations = [a for a in dataset["annotations"] if a["image_id"] == image["id"]]
        for annotation in annotations:
            x, y, w, h = map(int, annotation["bbox"])
            category = categories[annotation["category_id"]]
            free = np.ones((h, w), bool)
            for other in annotations:
                if other is not annotation:
                    ox, oy, ow, oh = map(int, other["bbox"])
                    free[max(oy - y, 0) : max(oy + oh - y, 0), max(ox - x, 0) : max(ox + ow - x, 0)] = False
            inside = pixels[y : y + h, x : x + w][render_shape_mask(category["shape"], w, h) & free]
            if len(inside) < 30:
                continue
            mean = inside.mean(axis=0)
            assert np.abs(mean - category["colour"]).max() < 6, (annotation, mean)
            distances = np.sort(np.linalg.norm(palette - mean, axis=1))
            assert distances[0] < 10 and distances[1] > 90, distances[:2]
            assert 4 < inside.std(axis=0).max() < 12
            checked.add(category["id"])
    assert len(checked) >= 20  # many colours and shapes seen


def test_clutter_takes_the_classes_colours_only(tmp_path):
    """Without noise, every bright pixel (outside the boxes: clutter) has one of the dataset's three colours."""
    generate_shapes_dataset(str(tmp_path), {"train": 4}, colours=3, noise_std=0.0, **SMALL)
    dataset = _read(str(tmp_path), "train")
    allowed = {COLOURS[name] for name in ("red", "green", "blue")}
    seen = set()
    for image in dataset["images"]:
        pixels = np.asarray(Image.open(tmp_path / "train" / image["file_name"]))
        outside = np.ones(pixels.shape[:2], bool)
        for annotation in dataset["annotations"]:
            if annotation["image_id"] == image["id"]:
                x, y, w, h = map(int, annotation["bbox"])
                outside[y : y + h, x : x + w] = False
        bright = pixels[outside & (pixels.max(axis=2) == 240)]  # pixels drawn in a colour, not blended ones
        seen |= {tuple(map(int, pixel)) for pixel in bright}
    assert seen and seen <= allowed


def test_same_arguments_same_files_and_the_default_unchanged(tmp_path):
    def files(name, **kwargs):
        output_dir = tmp_path / name
        generate_shapes_dataset(str(output_dir), {"train": 2, "val": 1}, image_size=(64, 64), min_size=8,
                                max_size=24, **kwargs)
        return {str(p.relative_to(output_dir)): p.read_bytes() for p in sorted(output_dir.rglob("*")) if p.is_file()}

    coloured = files("a", colours=5)
    assert coloured == files("b", colours=5)
    assert coloured["train/train_000000.png"] != files("c", colours=6)["train/train_000000.png"]
    default = files("d")
    assert default == files("e", colours=None)
    assert "colours" not in json.loads(default["annotations/instances_train.json"])["info"]["parameters"]


@pytest.mark.parametrize("colours", [0, 20, -1, 2.5, True, "3"])
def test_a_colour_count_out_of_range_is_named(tmp_path, colours):
    with pytest.raises(ConfigError, match=f"^colours must be None or an integer from 1 to 19, got {colours!r}$"):
        generate_shapes_dataset(str(tmp_path), colours=colours)
    assert not os.path.exists(tmp_path / "annotations")


def test_command_line_colours(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "bin", "generate_shapes"), f"--output_dir={tmp_path}",
               "--train_images=2", "--val_images=0", "--imbalance", "--classes=circle,star", "--colours=4"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    names = [c["name"] for c in _read(str(tmp_path), "train")["categories"]]
    assert names == ["red circle", "red star", "green circle", "green star", "blue circle", "blue star",
                     "yellow circle", "yellow star"]
    result = subprocess.run([*command[:-1], "--colours=40"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith("colours must be None or an integer from 1 to 19, got 40")
