"""Drawing detections on images, for `bin/predict`, the demo and TensorBoard image summaries.

Plain numpy and Pillow, so that drawing never touches TensorFlow. Boxes are `xyxy` pixels, as `RetinaNet.predict`
returns them by default.
"""

import colorsys
import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Kelly's colours of maximum contrast (white and black left out): the first 20 classes are easy to tell apart.
PALETTE = (
    (255, 179, 0), (128, 62, 117), (255, 104, 0), (166, 189, 215), (193, 0, 32),
    (206, 162, 98), (129, 112, 102), (0, 125, 52), (246, 118, 142), (0, 83, 138),
    (255, 122, 92), (83, 55, 122), (255, 142, 0), (179, 40, 81), (244, 200, 0),
    (127, 24, 13), (147, 170, 0), (89, 51, 21), (241, 58, 19), (35, 44, 22),
)
GOLDEN_RATIO_CONJUGATE = (math.sqrt(5) - 1) / 2
CAPTION_PADDING = 2
GROUND_TRUTH_DASH = 4  # px
DASH_COLOURS = ((255, 255, 255), (0, 0, 0))
# Pictures (bin/predict, the demo, TensorBoard, evaluation galleries) draw detections scoring at least this by
# default: the decoder keeps everything down to 0.05 for the AP, which would bury the good boxes under weak ones.
DEFAULT_DRAW_THRESHOLD = 0.5
# bin/inspect_dataset's anchors: those a box matches, and each box's best.
MATCHED_ANCHOR_COLOUR = (0, 255, 255)
BEST_ANCHOR_COLOUR = (255, 0, 255)


def class_colour(class_index):
    """The fixed RGB colour of a class: `PALETTE`, then hues spread by the golden ratio for further classes."""
    if class_index < len(PALETTE):
        return PALETTE[class_index]
    hue = ((class_index - len(PALETTE)) * GOLDEN_RATIO_CONJUGATE) % 1.0
    return tuple(round(255 * channel) for channel in colorsys.hsv_to_rgb(hue, 0.85, 0.9))


def readable_text_colour(fill):
    """Black on light fills, white on dark ones (ITU-R BT.601 luma)."""
    red, green, blue = fill
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue >= 128 else (255, 255, 255)


@functools.lru_cache(maxsize=8)
def caption_font(size):
    """Pillow's built-in font at `size` pixels; the fixed-size bitmap font where Pillow cannot scale it."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def draw_detections(image, boxes, scores=None, class_names=None, labels=None, score_threshold=0.0,
                    ground_truth_boxes=None):
    """Draws boxes with captions "name 0.87" on a copy of `image`.

    Args:
        image: RGB uint8 array [H, W, 3], or a PIL image. Left unchanged.
        boxes: [D, 4] `xyxy` pixels. Clipped to the image; a box entirely outside it is not drawn.
        scores: [D] or None. Boxes scoring below `score_threshold` are not drawn; higher scores are drawn last,
            so the best detections stay on top.
        class_names: names indexed by `labels`, or None to caption with the label number.
        labels: [D] int or None. A class keeps its colour (`class_colour`) across images.
        score_threshold: the lowest score drawn.
        ground_truth_boxes: [G, 4] `xyxy` pixels or None, drawn as thin dashed outlines under the detections.

    Returns:
        A new RGB `PIL.Image.Image`.

    Raises:
        ValueError: a box that is not finite or has a negative size, a label outside `class_names`, mismatched
            lengths, or an image that is not RGB uint8.
    """
    canvas = _rgb_copy(image)
    boxes = _checked_boxes(boxes, "boxes")
    scores = None if scores is None else _checked_per_box(scores, len(boxes), "scores").astype(np.float64)
    labels = None if labels is None else _checked_labels(labels, len(boxes), class_names)
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, round(min(canvas.size) / 200))
    font = caption_font(max(10, round(min(canvas.size) / 40)))

    if ground_truth_boxes is not None:
        for box in _checked_boxes(ground_truth_boxes, "ground_truth_boxes"):
            if _intersects(box, canvas.size):
                _draw_dashed_rectangle(draw, _clipped(box, canvas.size))

    order = np.arange(len(boxes)) if scores is None else np.argsort(scores, kind="stable")
    shown = [index for index in order
             if (scores is None or scores[index] >= score_threshold) and _intersects(boxes[index], canvas.size)]
    captions = {}
    for index in reversed(shown):  # the best detection picks its caption's place first
        label = None if labels is None else int(labels[index])
        text = _caption(label, class_names, None if scores is None else scores[index])
        if text:
            place = _caption_place(draw, text, _clipped(boxes[index], canvas.size), font, canvas.size,
                                   [place for _, place in captions.values()])
            captions[index] = (text, place)
    for index in shown:  # boxes from the lowest score up, so the best stay on top, then captions over all boxes
        colour = class_colour(0 if labels is None else int(labels[index]))
        draw.rectangle(_clipped(boxes[index], canvas.size), outline=colour, width=line_width)
    for index in shown:
        if index in captions:
            text, place = captions[index]
            _draw_caption(draw, text, place, class_colour(0 if labels is None else int(labels[index])), font)
    return canvas


def draw_batch_detections(image, detections, index, class_names, score_threshold, ground_truth_boxes=None):
    """`draw_detections` of image `index` of a batch of padded `detections` (`RetinaNet.predict` outputs)."""
    count = int(detections["num_detections"][index])
    return draw_detections(
        image,
        detections["boxes"][index, :count],
        scores=detections["scores"][index, :count],
        labels=detections["classes"][index, :count],
        class_names=class_names,
        score_threshold=score_threshold,
        ground_truth_boxes=ground_truth_boxes,
    )


def draw_anchor_matches(image, boxes, labels, anchors, iou, positive_threshold, class_names, ignore_boxes=None):
    """PIL picture of `image` (a network input, uint8) with its ground-truth `boxes` captioned with the IoU of their
    best anchor, the `anchors` they match (`iou` [boxes, anchors] >= `positive_threshold`) as thin cyan outlines,
    each box's best anchor in magenta (even below the threshold) and `ignore_boxes` dashed."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    best_iou = np.zeros(len(boxes), np.float32)
    if len(boxes):
        for anchor in anchors[np.any(iou >= positive_threshold, axis=0)]:
            draw.rectangle(anchor.round().tolist(), outline=MATCHED_ANCHOR_COLOUR, width=1)
        best = np.argmax(iou, axis=1)
        best_iou = iou[np.arange(len(boxes)), best]
        for anchor in anchors[best]:
            draw.rectangle(anchor.round().tolist(), outline=BEST_ANCHOR_COLOUR, width=2)
    return draw_detections(canvas, boxes, scores=best_iou, labels=labels, class_names=class_names,
                           ground_truth_boxes=ignore_boxes)


def image_grid(images, columns):
    """Tiles PIL images row by row into one picture, every cell the size of the largest image (black margins)."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    cell_width = max(image.width for image in images)
    cell_height = max(image.height for image in images)
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * cell_width, rows * cell_height))
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid.paste(image.convert("RGB"), (column * cell_width, row * cell_height))
    return grid


def _rgb_copy(image):
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # always a new image
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be an RGB uint8 array [H, W, 3], got {image.dtype} {image.shape}")
    return Image.fromarray(image.copy())


def _checked_boxes(boxes, name):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4], got shape {boxes.shape}")
    for index, box in enumerate(boxes):
        if not np.all(np.isfinite(box)):
            raise ValueError(f"{name}[{index}] is not finite: {box.tolist()}")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"{name}[{index}] has a negative size (xyxy expected): {box.tolist()}")
    return boxes


def _checked_per_box(values, num_boxes, name):
    values = np.asarray(values).reshape(-1)
    if len(values) != num_boxes:
        raise ValueError(f"{name} has {len(values)} entries for {num_boxes} boxes")
    return values


def _checked_labels(labels, num_boxes, class_names):
    labels = _checked_per_box(labels, num_boxes, "labels").astype(np.int64)
    for index, label in enumerate(labels):
        if label < 0 or (class_names is not None and label >= len(class_names)):
            names = "no class names" if class_names is None else f"{len(class_names)} class names"
            raise ValueError(f"labels[{index}] = {label} is out of range for {names}")
    return labels


def _intersects(box, image_size):
    width, height = image_size
    return box[2] >= 0 and box[3] >= 0 and box[0] <= width and box[1] <= height


def _clipped(box, image_size):
    """Integer pixel corners inside the image, as `ImageDraw.rectangle` takes them (both ends inclusive)."""
    width, height = image_size
    x_min, y_min, x_max, y_max = np.round(box).astype(int).tolist()
    return (min(max(x_min, 0), width - 1), min(max(y_min, 0), height - 1),
            min(max(x_max, 0), width - 1), min(max(y_max, 0), height - 1))


def _caption(label, class_names, score):
    parts = []
    if label is not None:
        parts.append(str(label) if class_names is None else str(class_names[label]))
    if score is not None:
        parts.append(f"{score:.2f}")
    return " ".join(parts)


def _caption_place(draw, text, rectangle, font, image_size, taken):
    """Where a caption goes: above the box's top-left corner, else inside it, else under the box, else at its
    bottom inside, whichever first stays in the image and clear of the captions already `taken`; the first place
    that fits the image if all overlap. Returns (left, top, right, bottom), both ends inclusive."""
    width, height = image_size
    text_left, text_top, text_right, text_bottom = draw.textbbox((0, 0), text, font=font)
    caption_width = text_right - text_left + 2 * CAPTION_PADDING
    caption_height = text_bottom - text_top + 2 * CAPTION_PADDING
    x_min, y_min, _, y_max = rectangle
    left = max(0, min(x_min, width - caption_width))
    places = [(left, top, left + caption_width - 1, top + caption_height - 1)
              for top in (y_min - caption_height, y_min, y_max + 1, y_max - caption_height + 1)
              if 0 <= top <= height - caption_height]
    places = places or [(left, max(0, y_min), left + caption_width - 1, max(0, y_min) + caption_height - 1)]
    return next((place for place in places if not any(_overlap(place, other) for other in taken)), places[0])


def _overlap(first, second):
    return first[0] <= second[2] and second[0] <= first[2] and first[1] <= second[3] and second[1] <= first[3]


def _draw_caption(draw, text, place, fill, font):
    """A filled caption at `place` (see `_caption_place`), its text in black or white for contrast."""
    left, top = place[:2]
    text_left, text_top, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.rectangle(place, fill=fill)
    draw.text((left + CAPTION_PADDING - text_left, top + CAPTION_PADDING - text_top), text,
              fill=readable_text_colour(fill), font=font)


def _draw_dashed_rectangle(draw, rectangle):
    """A 1 px outline of dashes alternating white and black, so that it shows on any background."""
    x_min, y_min, x_max, y_max = rectangle
    for dash, x in enumerate(range(x_min, x_max + 1, GROUND_TRUTH_DASH)):
        x_end = min(x + GROUND_TRUTH_DASH - 1, x_max)
        for y in (y_min, y_max):
            draw.line([(x, y), (x_end, y)], fill=DASH_COLOURS[dash % 2])
    for dash, y in enumerate(range(y_min, y_max + 1, GROUND_TRUTH_DASH)):
        y_end = min(y + GROUND_TRUTH_DASH - 1, y_max)
        for x in (x_min, x_max):
            draw.line([(x, y), (x, y_end)], fill=DASH_COLOURS[dash % 2])
