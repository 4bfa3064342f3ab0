"""ONNX export for ONNX Runtime (and what reads ONNX: TensorRT on Jetson boards, OpenVINO, ...): the LiteRT model's
graph, converted by tf2onnx.

The model takes `images`, uint8 [1, H, W, 3] (RGB), and `image_size`, int32 [1, 2]: the (height, width) of the image
inside that input (fitted and padded at the bottom and right; `litert_runner.fit_to_input` does this). H and W are
fixed at export (default: the training size) or left dynamic (`dynamic_size`: any size a call gives; pyramid and
anchors follow it). Inside: the padding to the size divisor, the network, the box decoding and the model's own
detection path (per-level top-k, score threshold, class-wise NMS as ONNX `NonMaxSuppression`), so the outputs are
the SavedModel's: `detection_boxes` [1, D, 4] (ymin, xmin, ymax, xmax) normalised by `image_size`,
`detection_scores` [1, D], `detection_classes` [1, D] (dataset category ids, -1 for padding), `num_detections` [1].
`NAME.json` beside it describes it as for LiteRT; `litert_runner.ONNXDetector` runs it with onnxruntime and NumPy.
"""

import os

from keras_retinanet.errors import InputError
from keras_retinanet.export.litert import ExportedGraph, describe, write_description

# ONNX Runtime 1.16 and later run it; TensorRT 8.6 parses it.
ONNX_OPSET = 17
# The ONNX domains of standard operators: anything else is an op only some runtimes have.
_STANDARD_DOMAINS = ("", "ai.onnx")


class ONNXExportError(InputError, ValueError):
    """A model or setting that cannot become an ONNX model; the message names the cause (e.g. the ops)."""


def export_onnx(model, output_path, input_size=None, dynamic_size=False, score_threshold=None, iou_threshold=None,
                max_detections=None):
    """Writes `model` (a `RetinaNet` with `class_names` and `category_ids` in its metadata) as an ONNX model.

    Args:
        output_path: the `.onnx` file; its description `NAME.json` goes beside it.
        input_size: (height, width) of a fixed input; default: the training size (`default_input_size`). With
            `dynamic_size`, the size `litert_runner` fits images of any size into.
        dynamic_size: leave the input's height and width to each call.
        score_threshold, iou_threshold, max_detections: default: the model's decoder settings.

    Returns the description's contents.
    """
    if not output_path.endswith(".onnx"):
        raise ONNXExportError(f"the ONNX model's file name must end in .onnx, got {output_path}")
    graph = ExportedGraph.of(model, input_size, dynamic_size, (score_threshold, iou_threshold, max_detections),
                             ONNXExportError)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    convert_to_onnx(graph.functions[0], output_path)
    info = describe(model, "ONNX", graph.input_size, "float32", graph.data_config, graph.decoder)
    info["dynamic_size"] = bool(dynamic_size)
    write_description(output_path, info)
    return info


def convert_to_onnx(function, output_path):
    """Writes the ONNX model of `function` (a `tf.function` with an input signature) to `output_path`; an
    `ONNXExportError` says what failed or which ops are not standard ONNX."""
    try:
        import tf2onnx
    except ImportError as error:
        raise ONNXExportError(f"the ONNX export needs tf2onnx and onnx ({error}): pip install "
                              "'keras-retinanet[onnx]'") from None
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                 opset=ONNX_OPSET, output_path=output_path)
    except Exception as error:  # tf2onnx raises ValueError, RuntimeError or its own errors
        raise ONNXExportError(f"tf2onnx could not convert the detector ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:600]})") from error
    foreign = sorted({f"{node.domain}.{node.op_type}" for node in proto.graph.node
                      if node.domain not in _STANDARD_DOMAINS})
    if foreign:
        os.remove(output_path)
        raise ONNXExportError(f"the converted model needs ops outside standard ONNX: {', '.join(foreign)}")
