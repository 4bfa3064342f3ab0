"""The training augmentation steps of `data.augmentation` (`keras_retinanet.config.AUGMENTATION_STEPS`).

Each step takes an image [H, W, 3] with its boxes [N, 4] (`xyxy` pixels) and labels [N] (ignore regions among them,
label `GroundTruth.IGNORE_REGION`: they move, and are dropped and clipped, as the boxes are) and a stateless seed
[2], and returns them changed. Every random number comes from stateless ops of that seed, so a step gives the same
whatever the parallelism of the pipeline that maps it. Crops and offsets are whole pixels: a box covers the same
pixels after a step as before. Keras 3's box-aware preprocessing layers draw from a stateful seed generator, not
from a per-element seed, so the steps are written here.
"""

import tensorflow as tf

from keras_retinanet.boxes.iou import pairwise_iou

# ITU-R 601 luma weights: the grey of a pixel, as torchvision's and PIL's colour adjustments take it.
_LUMA = (0.299, 0.587, 0.114)


def augment(image, boxes, labels, steps, seed, resize, fill):
    """`steps` (`DataConfig.augmentation_steps()`) applied in order, step k drawing from `seed + k`. `resize(image,
    factor)` -> (resized image, (y, x) scale) is the pipeline's resize (with `min_size` and `max_size` times factor);
    `fill` [3] the padding pixel that zoom-out fills its canvas with."""
    for index, step in enumerate(steps):
        step_seed = seed + index
        if step.type == "resize":
            image, boxes = random_resize(image, boxes, step_seed, step, resize)
        elif step.type == "horizontal_flip":
            image, boxes = horizontal_flip(image, boxes, step_seed, step.probability)
        elif step.type == "photometric":
            image = photometric_distortion(image, step_seed, step)
        elif step.type == "zoom_out":
            image, boxes = zoom_out(image, boxes, step_seed, step, fill)
        elif step.type == "iou_crop":
            image, boxes, labels = random_iou_crop(image, boxes, labels, step_seed, step)
        else:
            raise ValueError(f"unknown augmentation step type {step.type!r}")
    return image, boxes, labels


def _draw(seed, stream, shape=(), low=0.0, high=1.0):
    """Uniform float32 numbers in [low, high) of random stream `stream` (> 0) of `seed`."""
    return tf.random.stateless_uniform(shape, tf.random.experimental.stateless_fold_in(seed, stream), low, high)


def _happens(seed, probability):
    """Whether a step of `probability` happens (its own stream of `seed`)."""
    return _draw(seed, 1) < probability


def random_resize(image, boxes, seed, step, resize):
    """The resize with a factor drawn from `step.scale` (factor 1 unless it happens, per `step.probability`);
    returns the float32 image and its boxes."""
    factor = tf.random.stateless_uniform([], seed, *step.scale)
    if step.probability < 1:
        factor = tf.where(_happens(seed, step.probability), factor, 1.0)
    image, scale = resize(image, factor)
    return image, boxes * tf.stack([scale[1], scale[0], scale[1], scale[0]])


def horizontal_flip(image, boxes, seed, probability=0.5):
    """The image and its boxes mirrored left-right with `probability`."""
    flip = tf.random.stateless_uniform([], seed) < probability
    width = tf.cast(tf.shape(image)[1], tf.float32)
    flipped_boxes = tf.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
    return image, tf.cond(flip, lambda: flipped_boxes, lambda: boxes)


def _grey(pixels):
    return tf.reduce_sum(pixels * _LUMA, axis=-1, keepdims=True)


def _blend(pixels, toward, factor):
    """`pixels` moved away from `toward` by `factor` (1: unchanged; 0: `toward`), as PIL's and torchvision's
    contrast and saturation adjustments do."""
    return toward + (pixels - toward) * factor


# The changes of `photometric_distortion`, in order: (setting, (pixels, drawn amount) -> pixels).
_COLOUR_CHANGES = (
    ("brightness", lambda pixels, factor: pixels * factor),
    ("contrast", lambda pixels, factor: _blend(pixels, tf.reduce_mean(_grey(pixels)), factor)),
    ("saturation", lambda pixels, factor: _blend(pixels, _grey(pixels), factor)),
    ("hue", lambda pixels, delta: tf.image.adjust_hue(pixels / 255.0, delta) * 255.0),
)


def photometric_distortion(image, seed, step):
    """Float32 `image` with brightness, contrast, saturation and hue changed, each with `step.probability` by a
    draw from its range (`PhotometricDistortion`), in that order; pixels stay within [0, 255]."""
    image = tf.cast(image, tf.float32)
    for index, (name, change) in enumerate(_COLOUR_CHANGES):
        amount = _draw(seed, 2 * index + 2, (), *getattr(step, name))
        happens = _draw(seed, 2 * index + 3) < step.probability
        image = tf.cond(happens, lambda: tf.clip_by_value(change(image, amount), 0.0, 255.0), lambda: image)
    return image


def zoom_out(image, boxes, seed, step, fill):
    """Float32 `image` placed at a random whole-pixel offset on a canvas `step.ratio` (drawn) times its sides,
    filled with `fill` [3], with `step.probability`; the boxes moved with it."""
    image = tf.cast(image, tf.float32)
    size = tf.shape(image)[:2]
    canvas = tf.cast(tf.floor(tf.cast(size, tf.float32) * _draw(seed, 2, (), *step.ratio)), tf.int32)
    canvas = tf.maximum(canvas, size)
    offset = tf.cast(tf.floor(_draw(seed, 3, [2]) * tf.cast(canvas - size + 1, tf.float32)), tf.int32)
    offset = tf.minimum(offset, canvas - size)
    paddings = tf.concat([tf.stack([offset, canvas - size - offset], axis=1), [[0, 0]]], axis=0)
    black = tf.get_static_value(fill) is not None and not tf.get_static_value(fill).any()

    def placed():
        placed_image = tf.pad(image, paddings)
        if not black:  # the fill where the padding is; image pixels plus zero stay exact
            placed_image += tf.pad(tf.zeros_like(image[..., :1]), paddings, constant_values=1.0) * fill
        shift = tf.cast(tf.tile(offset[::-1], [2]), tf.float32)
        return placed_image, boxes + shift

    return tf.cond(_happens(seed, step.probability), placed, lambda: (image, boxes))


def random_iou_crop(image, boxes, labels, seed, step):
    """SSD's crop (`IoUCrop`): `step.trials` whole-pixel patches drawn at once, the first that passes taken, with
    `step.probability`; boxes whose centre leaves it dropped (ignore regions too), the others clipped to it."""
    crops, valid, inside = _crop_candidates(tf.shape(image)[:2], boxes, seed, step)
    min_ious = tf.constant([-1.0 if value is None else value for value in step.min_ious], tf.float32)
    min_iou = tf.gather(min_ious, tf.random.stateless_uniform([], seed, 0, len(step.min_ious), tf.int32))
    iou = pairwise_iou(crops, boxes)
    objects = tf.logical_and(inside, (labels >= 0)[None, :])
    passes = tf.logical_and(valid, tf.logical_or(
        min_iou <= 0.0, tf.reduce_any(tf.logical_and(objects, iou >= min_iou), axis=1)
    ))
    crop_it = tf.logical_and(tf.logical_and(min_iou >= 0.0, tf.reduce_any(passes)),
                             _happens(seed, step.probability))
    chosen = tf.argmax(tf.cast(passes, tf.int32), output_type=tf.int32)  # the first passing trial

    def cropped():
        left, top, right, bottom = tf.unstack(tf.cast(crops[chosen], tf.int32))
        keep = inside[chosen]
        width, height = tf.cast(right - left, tf.float32), tf.cast(bottom - top, tf.float32)
        moved = tf.boolean_mask(boxes, keep) - tf.cast(tf.stack([left, top, left, top]), tf.float32)
        clipped = tf.clip_by_value(moved, 0.0, tf.stack([width, height, width, height]))
        return image[top:bottom, left:right], clipped, tf.boolean_mask(labels, keep)

    return tf.cond(crop_it, cropped, lambda: (image, boxes, labels))


def _crop_candidates(size, boxes, seed, step):
    """`step.trials` whole-pixel patches of an image of `size` (height, width): their `xyxy` corners [T, 4], whether
    each has a side ratio within `step.aspect_ratio` [T], and whether it holds each box's centre [T, N]."""
    size = tf.cast(size, tf.float32)
    sides = tf.maximum(tf.floor(_draw(seed, 2, [step.trials, 2], *step.scale) * size), 1.0)  # (height, width)
    corner = tf.floor(_draw(seed, 3, [step.trials, 2]) * (size - sides + 1.0))  # (top, left)
    corner = tf.minimum(corner, size - sides)
    crops = tf.concat([corner[:, ::-1], corner[:, ::-1] + sides[:, ::-1]], axis=1)
    ratio = sides[:, 1] / sides[:, 0]
    valid = tf.logical_and(ratio >= step.aspect_ratio[0], ratio <= step.aspect_ratio[1])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    inside = tf.reduce_all(tf.logical_and(crops[:, None, :2] < centres[None], centres[None] < crops[:, None, 2:]), -1)
    return crops, valid, inside
