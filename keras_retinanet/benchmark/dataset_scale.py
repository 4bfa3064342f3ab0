"""The dataset_scale path: reading, statistics and anchor fitting on a generated COCO-sized annotation file.

The file has COCO's shape (118,000 images, 860,000 boxes, 80 classes by default): image sizes, box counts per image,
box sizes and aspect ratios drawn at random, 1% of the boxes crowd regions. Images are tiny real JPEG files, one per
image size, hard-linked under every image's name, so that reading inspects real headers without gigabytes on disk.
"""

import json
import os
import time

import numpy as np

from keras_retinanet.benchmark.timing import peak_rss_bytes

# COCO's most common image sizes (width, height).
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 426), (500, 375), (640, 360), (612, 612))
COCO_IMAGES, COCO_BOXES, COCO_CLASSES = 118_000, 860_000, 80


def write_coco_sized(folder, images=COCO_IMAGES, boxes=COCO_BOXES, classes=COCO_CLASSES, seed=0):
    """Writes `folder`/instances.json and `folder`/images/ (hard links to one JPEG per size); returns (annotation
    file, images folder)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    image_folder = os.path.join(folder, "images")
    os.makedirs(image_folder, exist_ok=True)
    originals = []
    for width, height in IMAGE_SIZES:
        path = os.path.join(folder, f"{width}x{height}.jpg")
        Image.new("RGB", (width, height), (120, 110, 100)).save(path, quality=50)
        originals.append(path)
    size_of_image = rng.integers(len(IMAGE_SIZES), size=images)
    entries = []
    for index, size in enumerate(size_of_image):
        name = f"{index + 1:012d}.jpg"
        os.link(originals[size], os.path.join(image_folder, name))
        width, height = IMAGE_SIZES[size]
        entries.append({"id": index + 1, "file_name": name, "width": width, "height": height})
    annotations = _random_annotations(rng, np.array(IMAGE_SIZES)[size_of_image], boxes, classes)
    categories = [{"id": i + 1, "name": f"class_{i + 1}", "supercategory": "thing"} for i in range(classes)]
    path = os.path.join(folder, "instances.json")
    with open(path, "w") as file:
        json.dump({"images": entries, "annotations": annotations, "categories": categories}, file)
    return path, image_folder


def _random_annotations(rng, image_sizes, count, classes):
    """`count` COCO annotations over images of `image_sizes` [N, 2] (width, height): sizes log-uniform from 4 px to
    the image's shorter side, aspect ratios log-uniform in 1/3..3, 1% crowd."""
    image_index = np.sort(rng.integers(len(image_sizes), size=count))
    sides = image_sizes[image_index].astype(np.float64)
    size = np.exp(rng.uniform(np.log(4), np.log(sides.min(axis=1))))
    ratio = np.exp(rng.uniform(np.log(1 / 3), np.log(3), size=count))
    width = np.minimum(size / np.sqrt(ratio), sides[:, 0])
    height = np.minimum(size * np.sqrt(ratio), sides[:, 1])
    x = rng.uniform(0, sides[:, 0] - width)
    y = rng.uniform(0, sides[:, 1] - height)
    category = rng.integers(1, classes + 1, size=count)
    crowd = rng.random(count) < 0.01
    return [
        {"id": i + 1, "image_id": int(image_index[i]) + 1, "category_id": int(category[i]), "iscrowd": int(crowd[i]),
         "bbox": [round(float(x[i]), 2), round(float(y[i]), 2), round(float(width[i]), 2), round(float(height[i]), 2)],
         "area": round(float(width[i] * height[i]), 2)}
        for i in range(count)
    ]


def dataset_scale(images=COCO_IMAGES, boxes=COCO_BOXES, classes=COCO_CLASSES):
    """Seconds to generate, read (headers only), compute the statistics of and fit anchors to a generated
    COCO-sized file, and the peak memory after reading and at the end."""
    import tempfile

    from keras_retinanet.config import ExperimentConfig
    from keras_retinanet.data import DataPolicy, read_dataset
    from keras_retinanet.data.anchor_fitting import fit_anchors
    from keras_retinanet.data.statistics import dataset_statistics
    from keras_retinanet.data.statistics import InputGeometry
    from keras_retinanet.models.factory import build_anchor_generator, build_matcher

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        annotations, image_folder = write_coco_sized(folder, images, boxes, classes)
        generated = time.perf_counter()
        dataset = read_dataset("coco", annotations, image_folder, policy=DataPolicy(verify_images=False))
        read = time.perf_counter()
        read_rss = peak_rss_bytes()
        config = ExperimentConfig()
        geometry = InputGeometry(config.data, build_anchor_generator(config.model.anchors),
                                 build_matcher(config.model.matcher))
        statistics = dataset_statistics(dataset, geometry)
        counted = time.perf_counter()
        fitted = fit_anchors(dataset, geometry)
        done = time.perf_counter()
    return {"generate_seconds": generated - start, "read_seconds": read - generated, "read_peak_rss_bytes": read_rss,
            "statistics_seconds": counted - read, "fit_seconds": done - counted, "images": len(dataset.records),
            "boxes": statistics.num_boxes, "coverage_before": fitted.before_score.coverage,
            "coverage_after": fitted.after_score.coverage}
