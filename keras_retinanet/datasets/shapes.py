"""A synthetic COCO-format detection dataset of filled shapes on cluttered, noisy backgrounds.

Small enough for a RetinaNet to learn in minutes on a CPU, yet in the paper's regime: several classes, many
small objects an image, and distractors and noise, so that foreground anchors are rare and the detector must
learn shapes rather than "any bright blob".

Command line: `bin/generate_shapes --output_dir=DIR [--train_images=400 ...]`.
"""

import json
import os
import zlib

import numpy as np
from PIL import Image, ImageDraw

from keras_retinanet.config import ConfigError

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")  # the default classes
# Every shape the generator draws: datasets of other class lists share some names (fine-tuning from one to another).
SHAPES = (*SHAPE_CLASSES, "star", "hexagon")

# Every colour has a channel >= 230 and every background channel is <= 100, so an object (before noise) differs
# from the background under it by at least 130 in some channel. Clutter uses the same colours.
PALETTE = (
    (235, 64, 52),
    (245, 150, 40),
    (240, 230, 70),
    (80, 235, 100),
    (70, 230, 235),
    (90, 140, 250),
    (235, 80, 230),
    (240, 240, 240),
)
# Named colours for datasets whose classes are colour and shape (`generate_shapes_dataset(colours=N)`: the first N):
# every channel 40, 140 or 240 and at least one 240, so that each stands 140 above the background in some channel
# (as `PALETTE`'s do) and any two differ by 100 or more in some channel: 12 standard deviations of the default noise.
# The first seven differ pairwise by 200.
COLOURS = {
    "red": (240, 40, 40),
    "green": (40, 240, 40),
    "blue": (40, 40, 240),
    "yellow": (240, 240, 40),
    "cyan": (40, 240, 240),
    "magenta": (240, 40, 240),
    "white": (240, 240, 240),
    "orange": (240, 140, 40),
    "azure": (40, 140, 240),
    "violet": (140, 40, 240),
    "lime": (140, 240, 40),
    "rose": (240, 40, 140),
    "mint": (40, 240, 140),
    "pink": (240, 140, 240),
    "cream": (240, 240, 140),
    "ice": (140, 240, 240),
    "salmon": (240, 140, 140),
    "pale green": (140, 240, 140),
    "lavender": (140, 140, 240),
}
BACKGROUND_RANGE = (20, 100)
BACKGROUND_GRID = 4  # the background is a 4 x 4 grid of random colours, bilinearly upsampled
MAX_ASPECT_RATIO = 1.25  # width / height of an object lies in [1 / 1.25, 1.25]
MAX_OVERLAP_IOU = 0.1
PLACEMENT_TRIES = 50
CLUTTER_ITEMS_PER_256X256 = 12
MIN_SHAPE_SIZE = 4  # below this the classes are not recognisable

# Foreground-background imbalance like COCO's, for the paper's ablations (`keras_retinanet.study`): large images
# with one to three small objects among clutter. With the 16-256 px anchors of configs/study/base.yaml about 1
# anchor in 870 is positive (the study measures and reports the ratio).
IMBALANCE_PRESET = {"image_size": (256, 256), "min_objects": 1, "max_objects": 3, "min_size": 12, "max_size": 32}


def render_shape_mask(shape, width, height):
    """The shape's pixels, a bool array [height, width] whose true pixels touch all four borders."""
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    right, bottom = width - 1, height - 1
    if shape == "circle":
        draw.ellipse([0, 0, right, bottom], fill=1)
    elif shape == "square":
        draw.rectangle([0, 0, right, bottom], fill=1)
    elif shape == "triangle":
        draw.polygon([(0, bottom), (right, bottom), (right / 2, 0)], fill=1)
    elif shape == "star":  # five points, the inner corners at 0.45 of the outer radius, stretched to the box
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        x, y = radii * np.cos(angles), -radii * np.sin(angles)
        x, y = (x - x.min()) / np.ptp(x) * right, (y - y.min()) / np.ptp(y) * bottom
        draw.polygon(list(zip(x, y)), fill=1)
    elif shape == "hexagon":  # flat top and bottom
        draw.polygon([(right / 4, 0), (3 * right / 4, 0), (right, bottom / 2), (3 * right / 4, bottom),
                      (right / 4, bottom), (0, bottom / 2)], fill=1)
    elif shape == "cross":
        bar_width, bar_height = max(1, round(width / 3)), max(1, round(height / 3))
        left, top = (width - bar_width) // 2, (height - bar_height) // 2
        draw.rectangle([left, 0, left + bar_width - 1, bottom], fill=1)
        draw.rectangle([0, top, right, top + bar_height - 1], fill=1)
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    return np.array(canvas, dtype=bool)


def _max_iou(box, boxes):
    """Largest IoU between one xyxy box and a list of xyxy boxes (0 for an empty list)."""
    if not boxes:
        return 0.0
    boxes = np.asarray(boxes, np.float64)
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    intersection = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    own_area = (box[2] - box[0]) * (box[3] - box[1])
    return float(np.max(intersection / (own_area + areas - intersection)))


def _background(rng, height, width):
    grid = rng.uniform(*BACKGROUND_RANGE, (BACKGROUND_GRID, BACKGROUND_GRID, 3)).astype(np.uint8)
    return Image.fromarray(grid).resize((width, height), Image.BILINEAR)


def _draw_clutter(rng, image, min_size, max_size, palette):
    """Unlabelled thin lines, small dots and open arcs in the objects' colours (`palette`)."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    for _ in range(rng.poisson(CLUTTER_ITEMS_PER_256X256 * width * height / 256**2)):
        colour = palette[rng.integers(len(palette))]
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        kind = rng.integers(3)
        if kind == 0:
            length, angle = rng.uniform(min_size, 2 * max_size), rng.uniform(0, 2 * np.pi)
            end = (x + length * np.cos(angle), y + length * np.sin(angle))
            draw.line([(x, y), end], fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 1:
            radius = rng.uniform(1, max(1.5, min_size / 5))
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
        else:
            size = rng.uniform(min_size, max_size)
            start = rng.uniform(0, 360)
            draw.arc([x, y, x + size, y + size], start, start + rng.uniform(60, 220), fill=colour,
                     width=int(rng.integers(1, 3)))


def _render_image(rng, height, width, num_objects, min_size, max_size, clutter, noise_std, classes, palette):
    """One image (uint8 [height, width, 3]) and its objects as (class index, xyxy integer box, pixel area).

    `classes` holds each class's (shape, colour): a colour None is drawn from `palette` for each object, else the
    object has it. Clutter takes `palette`'s colours."""
    image = _background(rng, height, width)
    if clutter:
        _draw_clutter(rng, image, min_size, max_size, palette)
    pixels = np.asarray(image, np.float32).copy()
    objects = []
    for _ in range(num_objects):
        for _ in range(PLACEMENT_TRIES):
            size = rng.uniform(min_size, max_size)
            aspect = np.exp(rng.uniform(-np.log(MAX_ASPECT_RATIO), np.log(MAX_ASPECT_RATIO)))
            box_width = int(np.clip(round(size * np.sqrt(aspect)), min_size, max_size))
            box_height = int(np.clip(round(size / np.sqrt(aspect)), min_size, max_size))
            x, y = int(rng.integers(0, width - box_width + 1)), int(rng.integers(0, height - box_height + 1))
            box = (x, y, x + box_width, y + box_height)
            if _max_iou(box, [placed[1] for placed in objects]) <= MAX_OVERLAP_IOU:
                break
        else:
            continue  # the image is too crowded for this object
        class_index = int(rng.integers(len(classes)))
        shape, colour = classes[class_index]
        mask = render_shape_mask(shape, box_width, box_height)
        pixels[y : box[3], x : box[2]][mask] = palette[rng.integers(len(palette))] if colour is None else colour
        objects.append((class_index, box, int(mask.sum())))
    if noise_std > 0:
        pixels += rng.normal(0.0, noise_std, pixels.shape).astype(np.float32)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), objects


def _split_rng(seed, split):
    """A generator that depends only on the seed and the split's name (crc32, not Python's salted hash)."""
    return np.random.default_rng([seed, zlib.crc32(split.encode("utf-8"))])


def _validate(splits, image_size, min_objects, max_objects, min_size, max_size, seed, noise_std, classes, colours):
    """`ConfigError` (a `ValueError`: the command lines print it in one line) naming a setting out of range."""
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(SHAPES):
        raise ConfigError(f"classes must be distinct names of {SHAPES}, got {list(classes)!r}")
    if colours is not None and (isinstance(colours, bool) or not isinstance(colours, (int, np.integer))
                                or not 1 <= colours <= len(COLOURS)):
        raise ConfigError(f"colours must be None or an integer from 1 to {len(COLOURS)}, got {colours!r}")
    if not splits:
        raise ConfigError(f"splits must name at least one split, got {splits!r}")
    for split, count in splits.items():
        if not isinstance(split, str) or not split or os.sep in split or split in (".", ".."):
            raise ConfigError(f"splits: split names must be plain file-name strings, got {split!r}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
            raise ConfigError(f"splits[{split!r}] must be a positive integer, got {count!r}")
    if len(image_size) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0
                                   for s in image_size):
        raise ConfigError(f"image_size must be two positive integers (height, width), got {image_size!r}")
    if min_objects < 0:
        raise ConfigError(f"min_objects must be >= 0, got {min_objects}")
    if max_objects < min_objects:
        raise ConfigError(f"max_objects must be >= min_objects ({min_objects}), got {max_objects}")
    if min_size < MIN_SHAPE_SIZE:
        raise ConfigError(f"min_size must be >= {MIN_SHAPE_SIZE}, got {min_size}")
    if max_size < min_size:
        raise ConfigError(f"max_size must be >= min_size ({min_size}), got {max_size}")
    if max_size > min(image_size):
        raise ConfigError(f"max_size must fit in the image ({min(image_size)} pixels), got {max_size}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if noise_std < 0:
        raise ConfigError(f"noise_std must be >= 0, got {noise_std}")


def generate_shapes_dataset(
    output_dir,
    splits={"train": 400, "val": 50},
    image_size=(256, 256),
    min_objects=2,
    max_objects=8,
    min_size=16,
    max_size=64,
    seed=0,
    clutter=True,
    noise_std=8.0,
    classes=SHAPE_CLASSES,
    colours=None,
):
    """Writes a COCO detection dataset of shapes and returns {split: path of its annotations JSON}.

    Layout: `output_dir/annotations/instances_{split}.json` and RGB PNGs `output_dir/{split}/{split}_{index:06d}.png`
    (index from 0; the image id is index + 1 and `file_name` is the bare file name, as in COCO).

    Each image: a smooth random background (channels in [20, 100]) with, if `clutter`, unlabelled lines, dots
    and open arcs; then `min_objects` to `max_objects` filled shapes (of `classes`, colours drawn from a
    bright palette independently of the class unless `colours` is given), each with width and height in
    [min_size, max_size], an aspect ratio within 1.25 (up to rounding to whole pixels), fully inside the image and
    with IoU <= 0.1 against the shapes already placed (a shape that finds no such place in 50 tries is left out, so
    a crowded image can hold fewer); finally Gaussian noise of standard deviation `noise_std` on every pixel and
    channel.

    Annotations: `bbox` is the tight box of the shape's pixels, `[x, y, width, height]` in pixels (floats, whole
    numbers); `area` is the shape's pixel count, as COCO's `area` is the segment's (COCOeval uses it for the
    small / medium / large ranges); `iscrowd` 0; ids from 1. A shape can be covered a little by a later one;
    its box and area are those of the whole shape. Categories are ids 1..K, named by `classes` (any of `SHAPES`;
    default `SHAPE_CLASSES`).

    `colours` N (1 to 19) makes the classes colour and shape: each of the first N of `COLOURS` with each of
    `classes`, colour by colour ("red circle", "red square", ..., "green circle", ...; the 6 `SHAPES` and 10
    colours are 60 classes, enough easy negatives per object for the paper's imbalance). An object then has its
    class's colour, clutter is drawn in the same N colours, and each category also holds its `shape` and `colour`
    (RGB). The colours differ by 100 or more in some channel (12 standard deviations of the default noise) and
    stand 140 above the background in one.

    Each split draws from its own generator seeded by `seed` and the split's name, so the same arguments give
    byte-identical files and a split does not change when other splits are added.
    """
    image_size = tuple(image_size)
    classes = tuple(classes)
    _validate(splits, image_size, min_objects, max_objects, min_size, max_size, seed, noise_std, classes, colours)
    parameters = dict(image_size=list(image_size), min_objects=min_objects, max_objects=max_objects,
                      min_size=min_size, max_size=max_size, seed=seed, clutter=clutter, noise_std=noise_std,
                      classes=list(classes))
    if colours is not None:  # absent otherwise: the files of datasets without it stay as they were
        parameters["colours"] = int(colours)
    os.makedirs(os.path.join(output_dir, "annotations"), exist_ok=True)
    return {split: _write_split(output_dir, split, count, parameters) for split, count in splits.items()}


def _write_split(output_dir, split, count, parameters):
    """Renders and writes the `count` images of `split` and its annotations JSON (path returned)."""
    rng = _split_rng(parameters["seed"], split)
    categories, shapes_and_colours, palette = _categories(parameters["classes"], parameters.get("colours"))
    height, width = parameters["image_size"]
    os.makedirs(os.path.join(output_dir, split), exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        num_objects = int(rng.integers(parameters["min_objects"], parameters["max_objects"] + 1))
        pixels, objects = _render_image(rng, height, width, num_objects, parameters["min_size"],
                                        parameters["max_size"], parameters["clutter"], parameters["noise_std"],
                                        shapes_and_colours, palette)
        file_name = f"{split}_{index:06d}.png"
        Image.fromarray(pixels, "RGB").save(os.path.join(output_dir, split, file_name))
        images.append({"id": index + 1, "file_name": file_name, "height": height, "width": width})
        for class_index, (x_min, y_min, x_max, y_max), area in objects:
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": index + 1,
                "category_id": class_index + 1,
                "bbox": [float(x_min), float(y_min), float(x_max - x_min), float(y_max - y_min)],
                "area": float(area),
                "iscrowd": 0,
            })
    dataset = {
        "info": {"description": f"keras_retinanet synthetic shapes, split {split!r}", "version": "1.0",
                 "contributor": "keras_retinanet.datasets.generate_shapes_dataset", "parameters": parameters},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = os.path.join(output_dir, "annotations", f"instances_{split}.json")
    with open(path, "w") as file:
        json.dump(dataset, file)
    return path


def _categories(shapes, colours):
    """(COCO categories, each class's (shape, RGB colour or None), the palette of the objects and clutter) of the
    classes `shapes` (with `colours`: of the first `colours` of `COLOURS` and `shapes`, colour by colour)."""
    if colours is None:
        categories = [{"id": i + 1, "name": shape, "supercategory": "shape"} for i, shape in enumerate(shapes)]
        return categories, [(shape, None) for shape in shapes], PALETTE
    named = list(COLOURS)[:colours]
    classes = [(name, shape) for name in named for shape in shapes]
    categories = [{"id": i + 1, "name": f"{name} {shape}", "supercategory": "shape", "shape": shape,
                   "colour": list(COLOURS[name])} for i, (name, shape) in enumerate(classes)]
    return categories, [(shape, COLOURS[name]) for name, shape in classes], [COLOURS[name] for name in named]
