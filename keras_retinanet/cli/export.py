"""Export for serving: `bin/export --model_dir=DIR --output=PATH` (or `--model=FILE.keras`).

--format=saved_model (the default), for TF Serving: the SavedModel takes raw images (signature `serving_default`:
a uint8 batch `images`; `image_bytes`: encoded `encoded_images`), resizes them as the model was trained, and returns
the TF Object Detection API's outputs (`detection_boxes`, `detection_scores`, `detection_classes`,
`num_detections`); see `keras_retinanet.export.saved_model`.

--format=tflite, for phones and boards: `--output=NAME.tflite` (and `NAME.json` beside it) takes a uint8 image
[1, H, W, 3] of a fixed --input_size and returns the same four outputs, decoding and NMS inside; --quantization
float32, float16 (weights) or int8 (calibrated on --num_calibration_images images of --representative_data, by
default the model's training split); see `keras_retinanet.export.litert`. Run it with
`keras_retinanet/export/litert_runner.py`, which needs only NumPy and a LiteRT interpreter.

--format=onnx (`--output=NAME.onnx`, for ONNX Runtime, TensorRT, ...) and --format=openvino (`--output=NAME.xml`,
its weights in NAME.bin, for OpenVINO) take the LiteRT model's inputs and give its outputs, NMS inside (ONNX's
NonMaxSuppression), at a fixed --input_size or, with --dynamic_size, any size; openvino also int8
(--quantization=int8: NNCF, calibrated as for tflite). `litert_runner.py` runs them too (with onnxruntime or
openvino, and NumPy). They need the [onnx] / [openvino] extras; see `keras_retinanet.export.onnx` and `.openvino`.

The thresholds default to the model's own inference settings.
"""

import re

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Model directory written by bin/train.")
flags.DEFINE_string("model", None, "A saved .keras model file (instead of --model_dir).")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "onnx", "openvino"],
                  "saved_model: a SavedModel for TF Serving; tflite: a LiteRT model of a fixed input size; onnx: an "
                  "ONNX model; openvino: an OpenVINO IR model.")
flags.DEFINE_string("output", None, "saved_model: the SavedModel directory to write (for TF Serving: "
                                    "MODEL_BASE/<version>); tflite: the .tflite file; onnx: the .onnx file; "
                                    "openvino: the .xml file.", required=True)
flags.DEFINE_float("score_threshold", None, "Detections need a score above this (default: the model's).")
flags.DEFINE_float("iou_threshold", None, "Class-wise NMS IoU threshold (default: the model's).")
flags.DEFINE_integer("max_detections", None, "Detections per image (default: the model's).")
flags.DEFINE_integer("min_size", None, "saved_model: shorter side of the resized image (default: as trained).")
flags.DEFINE_integer("max_size", None, "saved_model: cap of the longer side of the resized image (default: as "
                                       "trained).")
flags.DEFINE_integer("size_divisor", None, "saved_model: images are padded to multiples of this (default: as "
                                           "trained).")
flags.DEFINE_integer("max_image_pixels", None, "saved_model: the served model refuses larger images, before "
                                               "decoding them (default: the training data's limit, "
                                               "data.max_image_pixels).")
SAVED_MODEL_FLAGS = ("min_size", "max_size", "size_divisor", "max_image_pixels")  # resizing: not for the others
MAX_INPUT_SIDE = 8192  # pixels per side of a LiteRT input: its anchors are constants of the exported graph
flags.DEFINE_string("input_size", None, "tflite, onnx, openvino: the model's input, HEIGHTxWIDTH pixels, each side "
                                        f"at most {MAX_INPUT_SIDE} and in all at most the model's "
                                        "data.max_image_pixels (default: a square of the training min_size; the model "
                                        "pads it to the size divisor as in training).")
flags.DEFINE_boolean("dynamic_size", False, "onnx, openvino: leave the input's height and width to each call "
                                            "(--input_size is then the size litert_runner fits images into).")
flags.DEFINE_enum("quantization", "float32", ["float32", "float16", "int8"],
                  "tflite: float32; float16 (weights stored in float16); int8 (full integer quantisation of the "
                  "network, calibrated on --representative_data). openvino: float32 or int8 (NNCF). onnx: float32.")
# The quantisations each format offers beside saved_model (which has float32 only).
QUANTIZATIONS = {"tflite": ("float32", "float16", "int8"), "onnx": ("float32",), "openvino": ("float32", "int8")}
flags.DEFINE_string("representative_data", None, "int8: annotations of the calibration images (default: the "
                                                 "model's data.train); what they are depends on "
                                                 "--representative_format.")
flags.DEFINE_enum("representative_format", None, ["coco", "voc", "csv", "tfrecord"],
                  "Format of --representative_data (default: the model's data.train.format, or coco).")
flags.DEFINE_string("representative_images", None, "Image folder of --representative_data.")
flags.DEFINE_string("representative_classes", None, "Class file of --representative_data.")
flags.DEFINE_integer("num_calibration_images", 100, "int8: images to calibrate on, spread evenly over "
                                                    "--representative_data.", lower_bound=1)


def main(argv):
    del argv
    if (FLAGS.model_dir is None) == (FLAGS.model is None):
        raise app.UsageError("give exactly one of --model_dir and --model")
    input_size = parse_input_size(FLAGS.input_size) if FLAGS.input_size else None

    from keras_retinanet.inference import load_trained_model

    model = load_trained_model(FLAGS.model_dir or FLAGS.model)
    if FLAGS.format != "saved_model":
        export_fixed_graph(model, input_size)
        return
    for name in ("input_size", "dynamic_size"):
        if FLAGS[name].present:
            raise app.UsageError(f"--{name} is for --format=tflite, onnx or openvino; a SavedModel resizes images")
    from keras_retinanet.export import export_saved_model

    export_saved_model(
        model,
        FLAGS.output,
        score_threshold=FLAGS.score_threshold,
        iou_threshold=FLAGS.iou_threshold,
        max_detections=FLAGS.max_detections,
        **{name: FLAGS[name].value for name in SAVED_MODEL_FLAGS},
    )
    print(f"wrote the SavedModel to {FLAGS.output}: signatures serving_default (images, uint8 [B, H, W, 3]) and "
          "image_bytes (encoded_images, string [B]); label map in assets/")


def export_fixed_graph(model, input_size):
    """The LiteRT, ONNX or OpenVINO model of `model` per the flags, of `input_size` (height, width; None: the
    export's default)."""
    from keras_retinanet.config import ConfigError
    from keras_retinanet.export.litert_runner import description_path
    from keras_retinanet.inference import stored_data_config

    for name in SAVED_MODEL_FLAGS:
        if FLAGS[name].present:
            raise app.UsageError(f"--{name} is for --format=saved_model; a {FLAGS.format} model takes images fitted "
                                 "into its --input_size")
    if FLAGS.quantization not in QUANTIZATIONS[FLAGS.format]:
        raise app.UsageError(f"--format={FLAGS.format} offers --quantization "
                             f"{' or '.join(QUANTIZATIONS[FLAGS.format])}, not {FLAGS.quantization}")
    if FLAGS.dynamic_size and FLAGS.format == "tflite":
        raise app.UsageError("--dynamic_size is for onnx and openvino: a LiteRT model has a fixed --input_size")
    representative = None
    if FLAGS.quantization == "int8":
        representative = representative_dataset(model)
    elif any(FLAGS[name].present for name in ("representative_data", "representative_format",
                                              "representative_images", "representative_classes")):
        raise app.UsageError("--representative_data and its options are for --quantization=int8")
    max_pixels = stored_data_config(model).max_image_pixels
    if input_size and input_size[0] * input_size[1] > max_pixels:
        raise ConfigError(f"--input_size={FLAGS.input_size} has {input_size[0] * input_size[1]} pixels, more than the "
                          f"model's data.max_image_pixels ({max_pixels})")
    thresholds = dict(score_threshold=FLAGS.score_threshold, iou_threshold=FLAGS.iou_threshold,
                      max_detections=FLAGS.max_detections)
    calibration = dict(representative_data=representative, num_calibration_images=FLAGS.num_calibration_images,
                       progress=True)
    if FLAGS.format == "tflite":
        from keras_retinanet.export.litert import export_litert

        info = export_litert(model, FLAGS.output, input_size=input_size, quantization=FLAGS.quantization,
                             **calibration, **thresholds)
        runtime = "LiteRT"
    elif FLAGS.format == "onnx":
        from keras_retinanet.export.onnx import export_onnx

        info = export_onnx(model, FLAGS.output, input_size=input_size, dynamic_size=FLAGS.dynamic_size, **thresholds)
        runtime = "ONNX"
    else:
        from keras_retinanet.export.openvino import export_openvino

        info = export_openvino(model, FLAGS.output, input_size=input_size, dynamic_size=FLAGS.dynamic_size,
                               quantization=FLAGS.quantization, **calibration, **thresholds)
        runtime = "OpenVINO"
    height, width = ("H", "W") if FLAGS.dynamic_size else info["input_size"]
    print(f"wrote the {FLAGS.quantization} {runtime} model to {FLAGS.output} and its description to "
          f"{description_path(FLAGS.output)}: input images uint8 [1, {height}, {width}, 3]")


def parse_input_size(text):
    """(height, width) from "HEIGHTxWIDTH" in ASCII digits, each side 1 to `MAX_INPUT_SIDE`; a `ConfigError` naming
    the flag and the value otherwise."""
    from keras_retinanet.config import ConfigError, shown

    match = re.fullmatch(r"([0-9]{1,5})[xX]([0-9]{1,5})", text)
    if not match or not all(1 <= int(side) <= MAX_INPUT_SIDE for side in match.groups()):
        raise ConfigError(f"--input_size must be HEIGHTxWIDTH in pixels, each side 1 to {MAX_INPUT_SIDE}, e.g. "
                          f"320x320, got {shown(text)}")
    return int(match[1]), int(match[2])


def representative_dataset(model):
    """The calibration dataset: the flags' split, or the model's training split."""
    from keras_retinanet.config import SplitConfig
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.inference import stored_data_config

    trained_here = bool(model.metadata.get("config"))
    data_config = stored_data_config(model)
    if FLAGS.representative_data:
        split = SplitConfig(FLAGS.representative_data, FLAGS.representative_images or "",
                            FLAGS.representative_format or "coco", FLAGS.representative_classes or "")
    elif not trained_here:
        raise app.UsageError("this model carries no training config (it was not trained by bin/train): give the "
                             "calibration images with --representative_data")
    else:
        split = data_config.train
        split = SplitConfig(split.annotations, FLAGS.representative_images or split.images,
                            FLAGS.representative_format or split.format,
                            split.classes if FLAGS.representative_classes is None else FLAGS.representative_classes)
    return read_split(split, data_config)


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
