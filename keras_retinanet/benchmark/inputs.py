"""The same random images and boxes for every implementation."""

import numpy as np


def random_images(batch_size, image_size, seed=0):
    """RGB float32 images in [0, 255], [B, H, W, 3]."""
    return np.random.default_rng(seed).uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32)


def random_targets(batch_size, max_boxes, image_size, num_classes, seed=0):
    """Boxes [B, M, 4] (xyxy pixels) and labels [B, M], the second half of each image's rows padding (-1)."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, image_size * 0.8, (batch_size, max_boxes, 2))
    sizes = rng.uniform(16, image_size * 0.5, (batch_size, max_boxes, 2))
    boxes = np.concatenate([corners, np.minimum(corners + sizes, image_size)], axis=-1).astype(np.float32)
    labels = rng.integers(0, num_classes, (batch_size, max_boxes)).astype(np.int32)
    labels[:, max_boxes // 2 :] = -1
    return boxes, labels
