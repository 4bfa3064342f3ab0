"""OpenVINO export for Intel CPUs and GPUs: the ONNX model's graph (`keras_retinanet.export.onnx`), converted by
`openvino.convert_model` into OpenVINO IR (`NAME.xml` and its weights `NAME.bin`).

Not from the SavedModel, though `convert_model` reads it: OpenVINO 2026.4's CPU plugin crashed (segmentation fault
in `infer`) in 3 of 6 runs of that conversion of configs/mobile_320.yaml's detector at 128 px, and in none of 6 of
the ONNX route's on the same model and image (2-core Intel Xeon). The export hence needs tf2onnx too.

Inputs, outputs and the description `NAME.json` are the ONNX model's (see `keras_retinanet.export.onnx`): a fixed or
dynamic input size, decoding and class-wise NMS inside. "int8" quantises the network after training with NNCF
(`nncf.quantize`, calibrated on images of a representative dataset, fitted as users fit theirs); its decoding and
NMS stay in float32. `litert_runner.OpenVINODetector` runs it with OpenVINO and NumPy.
"""

import os
import tempfile

from keras_retinanet.errors import InputError
from keras_retinanet.export.litert import ExportedGraph, calibration_images, describe, write_description
from keras_retinanet.export.onnx import convert_to_onnx

QUANTIZATIONS = ("float32", "int8")


class OpenVINOExportError(InputError, ValueError):
    """A model or setting that cannot become an OpenVINO model; the message names the cause."""


def export_openvino(model, output_path, input_size=None, dynamic_size=False, quantization="float32",
                    representative_data=None, num_calibration_images=100, score_threshold=None, iou_threshold=None,
                    max_detections=None, progress=False):
    """Writes `model` (a `RetinaNet` with `class_names` and `category_ids` in its metadata) as OpenVINO IR.

    Args:
        output_path: the `.xml` file; its weights `NAME.bin` and description `NAME.json` go beside it.
        input_size, dynamic_size: as `export_onnx`'s.
        quantization: one of `QUANTIZATIONS`.
        representative_data: for "int8": a `DetectionDataset` whose images calibrate the quantisation.
        num_calibration_images: images taken from `representative_data`, spread evenly over it.
        score_threshold, iou_threshold, max_detections: default: the model's decoder settings.
        progress: show a progress bar with images/s over the calibration images.

    Returns the description's contents.
    """
    try:
        import openvino
    except ImportError as error:
        raise OpenVINOExportError(f"the OpenVINO export needs openvino ({error}): pip install "
                                  "'keras-retinanet[openvino]'") from None
    if quantization not in QUANTIZATIONS:
        raise OpenVINOExportError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if not output_path.endswith(".xml"):
        raise OpenVINOExportError(f"the OpenVINO model's file name must end in .xml, got {output_path}")
    if quantization == "int8" and representative_data is None:
        raise OpenVINOExportError("int8 quantisation needs a representative dataset to calibrate on")
    graph = ExportedGraph.of(model, input_size, dynamic_size, (score_threshold, iou_threshold, max_detections),
                             OpenVINOExportError)
    with tempfile.TemporaryDirectory() as staging:
        onnx_path = os.path.join(staging, "model.onnx")
        convert_to_onnx(graph.functions[0], onnx_path)
        try:
            converted = openvino.convert_model(onnx_path)
        except Exception as error:  # OpenVINO's OpConversionFailure and others
            raise OpenVINOExportError(f"openvino.convert_model failed ({type(error).__name__}: "
                                      f"{' '.join(str(error).split())[:600]})") from error
    if quantization == "int8":
        converted = _quantised(converted, representative_data, graph.input_size, graph.data_config,
                               num_calibration_images, progress)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    openvino.save_model(converted, output_path, compress_to_fp16=False)
    info = describe(model, "OpenVINO", graph.input_size, quantization, graph.data_config, graph.decoder)
    info["dynamic_size"] = bool(dynamic_size)
    write_description(output_path, info)
    return info


def _quantised(converted, representative_data, input_size, data_config, count, progress):
    """`converted` with NNCF's post-training int8 quantisation, calibrated on `count` images of
    `representative_data` fitted into `input_size` as users fit theirs (`image_size`: the whole input, which only
    steers the float32 decoding)."""
    try:
        import nncf
    except ImportError as error:
        raise OpenVINOExportError(f"int8 needs NNCF ({error}): pip install 'keras-retinanet[openvino]'") from None
    import numpy as np

    if count < 1:
        raise OpenVINOExportError(f"num_calibration_images must be at least 1, got {count}")
    images = [sample["images"] for sample in
              calibration_images(representative_data, input_size, data_config.resize_rule, count, progress)()]
    samples = [{"images": image, "image_size": np.int32([image.shape[1:3]])} for image in images]
    return nncf.quantize(converted, nncf.Dataset(samples), subset_size=len(samples))
