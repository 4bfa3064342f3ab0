"""Runs an exported LiteRT detector with NumPy and a LiteRT interpreter only: this file imports nothing else from
keras_retinanet, so it can be copied onto a phone or board beside `NAME.tflite` and `NAME.json`.

    python litert_runner.py NAME.tflite IMAGE [IMAGE ...]    (reading image files needs Pillow)

prints one JSON line per image: its detections, boxes [xmin, ymin, xmax, ymax] in the image's pixels, scores,
category ids and class names. The interpreter comes from `ai_edge_litert` (LiteRT's package), else
`tflite_runtime`, else `tensorflow.lite`.

Images of another size than the model's input are fitted into it by `fit_to_input`: scaled, aspect ratio kept
(bilinear, pixel centres aligned, no antialiasing, as `tf.image.resize`), and padded at the bottom and right with
the training padding pixel.
"""

import json
import os
import sys

import numpy as np

SIGNATURE = "serving_default"


def description_path(model_path):
    """`NAME.json`, the description the export writes beside `NAME.tflite`."""
    return os.path.splitext(model_path)[0] + ".json"


class LiteRTModelError(ValueError):
    """A LiteRT model or its description that is missing or cannot be read; the message names the file."""


def load_interpreter(model_path, num_threads=None):
    """A LiteRT interpreter of `model_path` from the first package of ai_edge_litert, tflite_runtime, tensorflow."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter
    return Interpreter(model_path=model_path, num_threads=num_threads)


def fit_to_input(image, input_size, padding_pixel=(0.0, 0.0, 0.0)):
    """`image` (uint8 [h, w, 3]) scaled to fit inside `input_size` (height, width), aspect ratio kept, and padded
    at the bottom and right with `padding_pixel`: (uint8 [H, W, 3], scale). Boxes on it, divided by `scale`, are
    boxes on `image`."""
    height, width = input_size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_height = min(height, max(1, round(image.shape[0] * scale)))
    new_width = min(width, max(1, round(image.shape[1] * scale)))
    fitted = np.empty((height, width, 3), np.float32)
    fitted[:] = np.round(padding_pixel)
    fitted[:new_height, :new_width] = _resize_bilinear(image, new_height, new_width)
    return np.clip(np.round(fitted), 0, 255).astype(np.uint8), scale


def _resize_bilinear(image, new_height, new_width):
    """float32 `image` resized as `tf.image.resize(..., "bilinear")` does (half-pixel centres, no antialiasing)."""
    image = image.astype(np.float32)
    if image.shape[:2] == (new_height, new_width):
        return image

    def sample(new, old):
        position = np.maximum((np.arange(new) + 0.5) * (old / new) - 0.5, 0.0)
        lower = np.minimum(np.floor(position).astype(np.int64), old - 1)
        return lower, np.minimum(lower + 1, old - 1), (position - lower).astype(np.float32)

    top, bottom, y_weight = sample(new_height, image.shape[0])
    left, right, x_weight = sample(new_width, image.shape[1])
    rows = image[top] * (1 - y_weight)[:, None, None] + image[bottom] * y_weight[:, None, None]
    return rows[:, left] * (1 - x_weight)[None, :, None] + rows[:, right] * x_weight[None, :, None]


class LiteRTDetector:
    """An exported detector: `detect` on images of the input size, `detect_image` on images of any size.

    Args:
        model_path: the `.tflite` file; its `NAME.json` beside it gives the label map and padding pixel.
        num_threads: interpreter threads (default: the interpreter's).
    """

    def __init__(self, model_path, num_threads=None):
        self.model_path = model_path
        info_path = description_path(model_path)
        if not os.path.isfile(model_path):
            raise LiteRTModelError(f"no LiteRT model at {model_path}")
        try:
            with open(info_path, encoding="utf-8") as stream:
                self.info = json.load(stream)
            self.label_map = {int(i): name for i, name in self.info["label_map"].items()}
        except (OSError, ValueError, KeyError, AttributeError) as error:
            raise LiteRTModelError(f"{model_path}: its description {info_path}, written beside it by the export, "
                                   f"cannot be read ({type(error).__name__}: {error})") from error
        try:
            self.interpreter = load_interpreter(model_path, num_threads)
            self._run = self.interpreter.get_signature_runner(SIGNATURE)
        except (RuntimeError, ValueError) as error:
            raise LiteRTModelError(f"{model_path}: not a LiteRT detector the interpreter can load "
                                   f"({type(error).__name__}: {error})") from error
        details = self._run.get_input_details()["images"]
        self.input_size = tuple(int(side) for side in details["shape"][1:3])
        self.input_dtype = np.dtype(details["dtype"])

    def detect(self, image):
        """Detections on `image`, uint8 [H, W, 3] or [1, H, W, 3] of the input size: the model's four outputs
        without the batch axis, cut to the `num_detections` found (boxes normalised (ymin, xmin, ymax, xmax)).
        A `ValueError` names the expected and given size or dtype."""
        image = np.asarray(image)
        height, width = self.input_size
        if image.dtype != self.input_dtype:
            raise ValueError(f"{self.model_path}: the model takes {self.input_dtype} images (RGB, 0-255), got "
                             f"{image.dtype}")
        if image.shape not in ((height, width, 3), (1, height, width, 3)):
            raise ValueError(f"{self.model_path}: the model takes images of {height} x {width} pixels (height x "
                             f"width) with 3 channels, shape [{height}, {width}, 3] or [1, {height}, {width}, 3], "
                             f"got shape {list(image.shape)}; fit other sizes with fit_to_input or detect_image")
        outputs = self._run(images=image.reshape(1, height, width, 3))
        count = int(outputs["num_detections"][0])
        return {key: outputs[key][0, :count] for key in ("detection_boxes", "detection_scores", "detection_classes")}

    def detect_image(self, image):
        """Detections on uint8 `image` [h, w, 3] of any size, fitted into the input: a dict of `boxes` [N, 4]
        (xmin, ymin, xmax, ymax in the image's pixels), `scores` [N] and `category_ids` [N]."""
        fitted, scale = fit_to_input(np.asarray(image), self.input_size, self.info["padding_pixel"])
        detections = self.detect(fitted)
        height, width = self.input_size
        boxes = detections["detection_boxes"][:, [1, 0, 3, 2]] * np.float32([width, height, width, height]) / scale
        limits = np.float32([image.shape[1], image.shape[0]] * 2)
        return {
            "boxes": np.clip(boxes, 0.0, limits),
            "scores": detections["detection_scores"],
            "category_ids": detections["detection_classes"].astype(np.int64),
        }


def main(argv):
    if len(argv) < 3:
        print("usage: python litert_runner.py NAME.tflite IMAGE [IMAGE ...]", file=sys.stderr)
        return 2
    from PIL import Image, ImageOps

    detector = LiteRTDetector(argv[1])
    for path in argv[2:]:
        with Image.open(path) as image:
            pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # upright, as training saw it
        detections = detector.detect_image(pixels)
        print(json.dumps({
            "image": path,
            "detections": [
                {"box": [round(float(v), 2) for v in box], "score": round(float(score), 5), "category_id": int(i),
                 "name": detector.label_map.get(int(i), str(int(i)))}
                for box, score, i in zip(detections["boxes"], detections["scores"], detections["category_ids"])
            ],
        }))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
