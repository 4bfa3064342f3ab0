"""Runs an exported detector with NumPy and its runtime only: a LiteRT model (`NAME.tflite`, `LiteRTDetector`), an
ONNX one (`NAME.onnx`, `ONNXDetector`, ONNX Runtime) or an OpenVINO one (`NAME.xml`, `OpenVINODetector`). This file
imports nothing else from keras_retinanet, so it can be copied onto a phone, board or server beside the model and
its description `NAME.json`.

    python litert_runner.py NAME.tflite|NAME.onnx|NAME.xml IMAGE [IMAGE ...]    (reading image files needs Pillow)

prints one JSON line per image: its detections, boxes [xmin, ymin, xmax, ymax] in the image's pixels, scores,
category ids and class names. The LiteRT interpreter comes from `ai_edge_litert` (LiteRT's package), else
`tflite_runtime`, else `tensorflow.lite`.

Images of another size than the model's input (for a model of dynamic size: than the training size) are fitted into
it by `fit_to_input`: scaled, aspect ratio kept
(bilinear, pixel centres aligned, no antialiasing, as `tf.image.resize`), and padded at the bottom and right with
the training padding pixel; the model is told the image's size inside its input, so that no detection lies in the
padding. Image files are read by `read_image` into the pixels the training pipeline (TensorFlow's decoders) gives,
within the pixel limit the model was trained with.
"""

import json
import math
import os
import stat
import sys

import numpy as np

SIGNATURE = "serving_default"


def description_path(model_path):
    """`NAME.json`, the description the export writes beside `NAME.tflite`."""
    return os.path.splitext(model_path)[0] + ".json"


class LiteRTModelError(ValueError):
    """An exported model (LiteRT, ONNX, OpenVINO) or its description that is missing or cannot be read; the message
    names the file."""


class ImageFileError(ValueError):
    """An image file that is missing, not a regular file, unreadable or over the pixel limit; names the file."""


DESCRIPTION_LIMIT = 1 << 20  # bytes: a description is a few kilobytes
# What the training pipeline decodes (TensorFlow's decoders; `keras_retinanet.data.images.DECODABLE_FORMATS`).
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")


def read_description(model_path):
    """The description `NAME.json` of `model_path`, checked: a `LiteRTModelError` names the file and the entry
    that is missing or of the wrong type (the file's contents are never echoed)."""
    path = description_path(model_path)

    def fail(cause):
        return LiteRTModelError(f"{model_path}: its description {path}, written beside it by the export, {cause}")

    try:
        with open(regular_file(path, LiteRTModelError), "rb") as stream:
            text = stream.read(DESCRIPTION_LIMIT + 1)
    except (OSError, LiteRTModelError) as error:
        raise fail(f"cannot be read ({error})") from None
    if len(text) > DESCRIPTION_LIMIT:
        raise fail(f"is over {DESCRIPTION_LIMIT} bytes")
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise fail("is nested too deeply" if isinstance(error, RecursionError) else "is not JSON") from None
    if not isinstance(info, dict):
        raise fail(f"holds a JSON {type(info).__name__}, not an object")

    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    label_map = info.get("label_map")
    checks = (
        ("label_map", isinstance(label_map, dict) and all(
            key.isascii() and key.lstrip("-").isdigit() and isinstance(name, str) for key, name in label_map.items()),
         "an object of category id -> class name"),
        ("padding_pixel", isinstance(info.get("padding_pixel"), list) and len(info["padding_pixel"]) == 3
         and all(number(v) and 0 <= v <= 255 for v in info["padding_pixel"]), "three numbers in 0-255"),
        ("data", isinstance(info.get("data"), dict), "an object (the training data settings)"),
        ("data.max_image_pixels", isinstance(info.get("data"), dict) and number(info["data"].get("max_image_pixels"))
         and info["data"]["max_image_pixels"] >= 1, "a positive number"),
    )
    for key, valid, expected in checks:
        if not valid:
            raise fail(f"needs '{key}': {expected}")
    return info


def regular_file(path, error_type):
    """`path` if it is a regular file (links followed); else `error_type` naming it: a FIFO, device or folder
    would hang a reader or never end."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise error_type(f"no such file: {path}") from None
    if not stat.S_ISREG(mode):
        raise error_type(f"{path} is not a regular file")
    return path


def read_image(path, max_pixels):
    """Upright RGB uint8 pixels [h, w, 3] of the image file `path`, as the training pipeline decodes them
    (TensorFlow's decoders: 16-bit samples keep their high byte, palettes and CMYK become RGB, alpha is dropped)
    and turned per its EXIF orientation; an `ImageFileError` naming the file if it is not a regular file, not of a
    format the pipeline reads (`IMAGE_FORMATS`, WebP without animation), or has more than `max_pixels` pixels
    (checked from its header, before decoding). Needs Pillow."""
    import warnings

    from PIL import Image, ImageOps

    regular_file(path, ImageFileError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageFileError(f"{path}: {width} x {height} pixels, more than the model's limit of "
                                         f"{int(max_pixels)} (data.max_image_pixels)")
                if image.format not in IMAGE_FORMATS or image.format == "WEBP" and getattr(image, "is_animated", 0):
                    raise ImageFileError(f"{path}: {image.format} images are not read by the training pipeline (use "
                                         f"one of {', '.join(IMAGE_FORMATS)}, WebP without animation)")
                image = ImageOps.exif_transpose(image)
                if image.mode.startswith("I"):  # 16-bit (or 32-bit integer) samples: TensorFlow keeps the high byte
                    gray = (np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
                    return np.repeat(gray[..., None], 3, axis=-1)
                return np.asarray(image.convert("RGB"))
    except ImageFileError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageFileError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None


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
    at the bottom and right with `padding_pixel`: (uint8 [H, W, 3], (height, width) of the image inside it)."""
    height, width = input_size
    scale = min(height / image.shape[0], width / image.shape[1])
    new_height = min(height, max(1, round(image.shape[0] * scale)))
    new_width = min(width, max(1, round(image.shape[1] * scale)))
    fitted = np.empty((height, width, 3), np.float32)
    fitted[:] = np.round(padding_pixel)
    fitted[:new_height, :new_width] = _resize_bilinear(image, new_height, new_width)
    return np.clip(np.round(fitted), 0, 255).astype(np.uint8), (new_height, new_width)


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


class ExportedDetector:
    """An exported detector: `detect` on images of the input size, `detect_image` on images of any size. Its
    runtime's subclass opens the model (`_open`) and runs it (`_run`).

    Args:
        model_path: the model file; its `NAME.json` beside it gives the label map, padding pixel and pixel limit.
        num_threads: the runtime's threads (default: the runtime's).
    """

    runtime = "an exported"

    def __init__(self, model_path, num_threads=None):
        self.model_path = model_path
        if not os.path.exists(model_path):
            raise LiteRTModelError(f"no {self.runtime} model at {model_path}")
        regular_file(model_path, LiteRTModelError)
        self.info = read_description(model_path)
        self.label_map = {int(i): name for i, name in self.info["label_map"].items()}
        self.max_image_pixels = self.info["data"]["max_image_pixels"]
        try:
            inputs = self._open(num_threads)
        except (RuntimeError, ValueError) as error:
            raise LiteRTModelError(f"{model_path}: not a {self.runtime} detector the runtime can load "
                                   f"({type(error).__name__}: {error})") from error
        if set(inputs) != {"images", "image_size"}:
            raise LiteRTModelError(f"{model_path}: takes {sorted(inputs)}, not a keras_retinanet {self.runtime} "
                                   "detector (which takes images and image_size; export it again with bin/export)")
        shape, self.input_dtype = inputs["images"]
        sides = tuple(shape[1:3])
        self.dynamic = not all(isinstance(side, (int, np.integer)) and side > 0 for side in sides)
        # A model of dynamic size takes any; `detect_image` fits images into the size it was trained at.
        self.input_size = tuple(self.info["input_size"]) if self.dynamic else tuple(int(side) for side in sides)

    def _open(self, num_threads):
        """Loads the model; returns {input name: (shape, NumPy dtype)}."""
        raise NotImplementedError

    def _run(self, images, image_size):
        """The model's outputs {name: array} on uint8 `images` [1, H, W, 3] and int32 `image_size` [1, 2]."""
        raise NotImplementedError

    def detect(self, image, image_size=None):
        """Detections on `image`, uint8 [H, W, 3] or [1, H, W, 3] of the input size (any size for a model of dynamic
        size), holding an image of `image_size` (height, width; default: all of it) at its top left, the rest
        padding: the model's four outputs without the batch axis, cut to the `num_detections` found (boxes (ymin,
        xmin, ymax, xmax) normalised by `image_size`). A `ValueError` names the expected and given size or dtype."""
        image = np.asarray(image)
        if image.dtype != self.input_dtype:
            raise ValueError(f"{self.model_path}: the model takes {self.input_dtype} images (RGB, 0-255), got "
                             f"{image.dtype}")
        height, width = image.shape[-3:-1] if self.dynamic and image.ndim in (3, 4) else self.input_size
        if image.shape not in ((height, width, 3), (1, height, width, 3)) or min(height, width) < 1:
            raise ValueError(f"{self.model_path}: the model takes images of {height} x {width} pixels (height x "
                             f"width) with 3 channels, shape [{height}, {width}, 3] or [1, {height}, {width}, 3], "
                             f"got shape {list(image.shape)}; fit other sizes with fit_to_input or detect_image")
        image_size = (height, width) if image_size is None else tuple(int(side) for side in image_size)
        if not (len(image_size) == 2 and 1 <= image_size[0] <= height and 1 <= image_size[1] <= width):
            raise ValueError(f"{self.model_path}: image_size must be (height, width) within the input's {height} x "
                             f"{width}, got {image_size}")
        outputs = self._run(image.reshape(1, height, width, 3), np.int32([image_size]))
        count = int(outputs["num_detections"][0])
        return {key: outputs[key][0, :count] for key in ("detection_boxes", "detection_scores", "detection_classes")}

    def detect_image(self, image):
        """Detections on uint8 `image` [h, w, 3] of any size, fitted into the input: a dict of `boxes` [N, 4]
        (xmin, ymin, xmax, ymax in the image's pixels), `scores` [N] and `category_ids` [N]."""
        image = np.asarray(image)
        fitted, size = fit_to_input(image, self.input_size, self.info["padding_pixel"])
        detections = self.detect(fitted, size)
        height, width = image.shape[:2]
        return {
            "boxes": detections["detection_boxes"][:, [1, 0, 3, 2]] * np.float32([width, height, width, height]),
            "scores": detections["detection_scores"],
            "category_ids": detections["detection_classes"].astype(np.int64),
        }

    def detect_file(self, path):
        """`detect_image` on the image file `path`, read by `read_image` within the model's pixel limit."""
        return self.detect_image(read_image(path, self.max_image_pixels))


class LiteRTDetector(ExportedDetector):
    """A `.tflite` detector run by a LiteRT interpreter (`load_interpreter`; XNNPACK on CPUs)."""

    runtime = "LiteRT"

    def _open(self, num_threads):
        self.interpreter = load_interpreter(self.model_path, num_threads)
        self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        return {name: (detail["shape"], np.dtype(detail["dtype"]))
                for name, detail in self._runner.get_input_details().items()}

    def _run(self, images, image_size):
        return self._runner(images=images, image_size=image_size)


class ONNXDetector(ExportedDetector):
    """A `.onnx` detector run by ONNX Runtime (`pip install onnxruntime`) on its CPU provider."""

    runtime = "ONNX"

    def _open(self, num_threads):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = onnxruntime.InferenceSession(self.model_path, options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's errors (InvalidGraph, Fail, ...) derive from RuntimeError or not
            raise RuntimeError(str(error).splitlines()[0]) from error
        dtypes = {"tensor(uint8)": np.uint8, "tensor(int32)": np.int32}
        return {node.name: (node.shape, np.dtype(dtypes.get(node.type, np.float32)))
                for node in self.session.get_inputs()}

    def _run(self, images, image_size):
        names = [node.name for node in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {"images": images, "image_size": image_size})))


class OpenVINODetector(ExportedDetector):
    """An OpenVINO IR detector (`NAME.xml` with its `NAME.bin`) run by OpenVINO (`pip install openvino`) on the
    CPU, in float32 where the model is not int8 (`precision` "bf16" lets OpenVINO use bfloat16 where the CPU has
    it, as it would by default)."""

    runtime = "OpenVINO"

    def __init__(self, model_path, num_threads=None, precision="f32"):
        self.precision = precision
        super().__init__(model_path, num_threads)

    def _open(self, num_threads):
        import openvino

        core = openvino.Core()
        config = {"INFERENCE_PRECISION_HINT": self.precision}
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = num_threads
        self.compiled = core.compile_model(core.read_model(self.model_path), "CPU", config)
        self._request = self.compiled.create_infer_request()
        inputs = {}
        for node in self.compiled.inputs:
            shape = [side.get_length() if side.is_static else None for side in node.get_partial_shape()]
            inputs[node.get_any_name()] = (shape, np.dtype(node.get_element_type().to_dtype()))
        return inputs

    def _run(self, images, image_size):
        results = self._request.infer({"images": images, "image_size": image_size})
        return {output.get_any_name(): np.asarray(value) for output, value in results.items()}


# The detector class of each model file's extension.
DETECTORS = {".tflite": LiteRTDetector, ".onnx": ONNXDetector, ".xml": OpenVINODetector}


def open_detector(model_path, num_threads=None):
    """The `ExportedDetector` of `model_path`, by its extension (`DETECTORS`)."""
    extension = os.path.splitext(model_path)[1].lower()
    if extension not in DETECTORS:
        raise LiteRTModelError(f"{model_path}: not an exported detector's file (one of {', '.join(DETECTORS)})")
    return DETECTORS[extension](model_path, num_threads)


def main(argv):
    if len(argv) < 3:
        print("usage: python litert_runner.py NAME.tflite|NAME.onnx|NAME.xml IMAGE [IMAGE ...]", file=sys.stderr)
        return 2
    detector = open_detector(argv[1])
    for path in argv[2:]:
        detections = detector.detect_file(path)
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
