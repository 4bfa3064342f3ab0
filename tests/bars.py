"""A generated dataset of elongated objects: bars of aspect 1:4 to 1:6, lying or standing, on noisy backgrounds
(COCO format, one class), for the anchor fitting tests."""

import json
import os

import numpy as np


def write_bars(folder, images=40, image_size=128, seed=0, split="train"):
    """Writes `images` PNGs of 1-4 bars each (long side 30-80 px, aspect 4-6, upright or lying, not overlapping
    much) to folder/split and their annotations to folder/instances_split.json; returns (annotations, images)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, split), exist_ok=True)
    entries, annotations = [], []
    for index in range(images):
        pixels = rng.normal(60, 12, (image_size, image_size, 3)).clip(0, 255).astype(np.uint8)
        picture = Image.fromarray(pixels)
        draw = ImageDraw.Draw(picture)
        placed = []
        for _ in range(int(rng.integers(1, 5))):
            box = _free_bar(rng, image_size, placed)
            if box is None:
                continue
            placed.append(box)
            colour = tuple(int(value) for value in rng.integers(150, 256, 3))
            draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=colour)
            x1, y1, x2, y2 = (float(value) for value in box)
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1, "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
        name = f"{split}_{index:04d}.png"
        picture.save(os.path.join(folder, split, name))
        entries.append({"id": index + 1, "file_name": name, "width": image_size, "height": image_size})
    path = os.path.join(folder, f"instances_{split}.json")
    with open(path, "w") as file:
        json.dump({"images": entries, "annotations": annotations, "categories": [{"id": 1, "name": "bar"}]}, file)
    return path, os.path.join(folder, split)


def _free_bar(rng, image_size, placed, tries=50):
    """An integer `xyxy` bar inside the image that does not overlap the `placed` ones, or None."""
    for _ in range(tries):
        long_side = int(rng.integers(30, 81))
        short_side = max(1, int(round(long_side / rng.uniform(4, 6))))
        width, height = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
        x, y = int(rng.integers(0, image_size - width + 1)), int(rng.integers(0, image_size - height + 1))
        box = (x, y, x + width, y + height)
        if all(box[2] <= other[0] or other[2] <= box[0] or box[3] <= other[1] or other[3] <= box[1]
               for other in placed):
            return box
    return None
