"""LiteRT (TFLite) export for phones and boards: a fixed-size uint8 image in, the SavedModel's four outputs out.

The `.tflite` model's one signature, `serving_default`, takes `images`, uint8 [1, H, W, 3] (RGB) of the size chosen
at export, and `image_size`, int32 [1, 2]: the (height, width) of the image inside that input (an image fitted into
it is padded at the bottom and right; `litert_runner.fit_to_input` does this). It pads the input as in training (to
multiples of the size divisor, with the training padding pixel), runs the network and decodes with the model's own
detection path (`keras_retinanet.inference.decode_in_original_pixels`: boxes clipped to the image, never into the
padding, per-level top-k, score threshold, class-wise NMS), all in TensorFlow ops that LiteRT runs natively. Its
outputs are the SavedModel's: `detection_boxes` [1, D, 4] (ymin, xmin, ymax, xmax) normalised by `image_size`,
`detection_scores` [1, D], `detection_classes` [1, D] (dataset category ids, -1 for padding) and `num_detections`
[1]. LiteRT's built-in detection post-processing op is not used: it has no per-level top-k and does not clip boxes
to the image before NMS, so it would not give the detections of `bin/predict` and the SavedModel.

Beside `NAME.tflite` goes `NAME.json` (`litert_runner.description_path`): the input size, label map, quantisation and
the data settings, which `keras_retinanet.export.litert_runner` and `bin/evaluate` read.

Quantisation (`QUANTIZATIONS`): "float32"; "float16" (weights stored in float16, computed in float32); "int8" (full
integer post-training quantisation of the network, calibrated on images of a representative dataset; the decoding
and NMS stay in float32, as box coordinates and scores need more than 8 bits).
"""

import dataclasses
import json
import os
import re
import tempfile

import keras
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

from keras_retinanet.config import to_dict
from keras_retinanet.data.pipeline import load_images, pad_to_multiple, padded_size, padding_pixel
from keras_retinanet.errors import InputError
from keras_retinanet.export.litert_runner import SIGNATURE, description_path, fit_to_input
from keras_retinanet.export.saved_model import export_decoder, label_map, object_detection_outputs
from keras_retinanet.inference import decode_in_original_pixels, stored_data_config
from keras_retinanet.progress import image_progress

QUANTIZATIONS = ("float32", "float16", "int8")


class LiteRTExportError(InputError, ValueError):
    """A model or setting that cannot become a LiteRT model; the message names the cause (e.g. the ops)."""


def default_input_size(data_config):
    """The export's default input size: a square of the training `min_size` (the model pads it as in training)."""
    return data_config.min_size, data_config.min_size


def export_litert(model, output_path, input_size=None, quantization="float32", representative_data=None,
                  num_calibration_images=100, score_threshold=None, iou_threshold=None, max_detections=None,
                  progress=False):
    """Writes `model` (a `RetinaNet` with `class_names` and `category_ids` in its metadata) as a LiteRT model.

    Args:
        output_path: the `.tflite` file; its description `NAME.json` goes beside it.
        input_size: (height, width) of the model's input; default: `default_input_size` of the training data.
        quantization: one of `QUANTIZATIONS`.
        representative_data: for "int8": a `DetectionDataset` whose images calibrate the quantisation.
        num_calibration_images: images taken from `representative_data`, spread evenly over it.
        score_threshold, iou_threshold, max_detections: default: the model's decoder settings.
        progress: show a progress bar with images/s over the calibration images.

    Returns the description's contents.
    """
    if quantization not in QUANTIZATIONS:
        raise LiteRTExportError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if not output_path.endswith(".tflite"):
        raise LiteRTExportError(f"the LiteRT model's file name must end in .tflite, got {output_path}")
    if quantization == "int8" and representative_data is None:
        raise LiteRTExportError("int8 quantisation needs a representative dataset to calibrate on")
    if quantization == "int8" and num_calibration_images < 1:
        raise LiteRTExportError(f"num_calibration_images must be at least 1, got {num_calibration_images}")
    graph = ExportedGraph.of(model, input_size, False, (score_threshold, iou_threshold, max_detections),
                             LiteRTExportError)
    input_size, data_config, decoder = graph.input_size, graph.data_config, graph.decoder
    detect, network, postprocess = graph.functions
    if quantization == "float32":
        flatbuffer = convert_to_litert(model, detect)
    elif quantization == "float16":
        flatbuffer = convert_to_litert(model, detect, float16=True)
    else:  # the network in int8, decoding and NMS in float32 (the quantiser would take them to int8 too)
        images = calibration_images(representative_data, input_size, data_config.resize_rule,
                                    num_calibration_images, progress)
        flatbuffer = join_models(convert_to_litert(model, network, calibration=images),
                                 convert_to_litert(model, postprocess))

    info = describe(model, "LiteRT", input_size, quantization, data_config, decoder)
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    with open(output_path, "wb") as stream:
        stream.write(flatbuffer)
    write_description(output_path, info)
    return info


@dataclasses.dataclass
class ExportedGraph:
    """What the LiteRT, ONNX and OpenVINO exports convert: the model's `data_config`, the `input_size` (height,
    width), the `decoder` and the `functions` (`_detection_functions`'s: detect, network, postprocess)."""

    data_config: object
    input_size: tuple
    decoder: object
    functions: tuple

    @classmethod
    def of(cls, model, input_size, dynamic_size, thresholds, error_type):
        """The graph of `model` at `input_size` (default: `default_input_size`), or of any size (`dynamic_size`;
        `input_size` then the size images are fitted into), with the decoder's (score_threshold, iou_threshold,
        max_detections) `thresholds` (None: the model's); a bad size is an `error_type`."""
        data_config = stored_data_config(model)
        input_size = tuple(int(side) for side in (input_size or default_input_size(data_config)))
        if len(input_size) != 2 or min(input_size) < 1:
            raise error_type(f"input_size must be (height, width), both positive, got {input_size}")
        decoder = export_decoder(model, *thresholds, per_image_nms=True)
        functions = _detection_functions(model, (None, None) if dynamic_size else input_size, data_config, decoder,
                                         list(label_map(model)))
        return cls(data_config, input_size, decoder, functions)


def describe(model, runtime, input_size, quantization, data_config, decoder):
    """The description `NAME.json` of an exported model for `runtime` (what `litert_runner` reads): its input size
    (for a model of dynamic size: the training size images are fitted into), label map, quantisation, padding
    pixel, decoder settings and data settings."""
    return {
        "format": f"keras_retinanet {runtime} detector",
        "input_size": list(input_size),
        "input_dtype": "uint8",
        "quantization": quantization,
        "label_map": {str(i): name for i, name in label_map(model).items()},
        "padding_pixel": [float(v) for v in padding_pixel(data_config.resize_rule).numpy()],
        "score_threshold": decoder.score_threshold,
        "iou_threshold": decoder.iou_threshold,
        "max_detections": decoder.max_detections,
        "data": to_dict(data_config),
    }


def write_description(model_path, info):
    """Writes `info` (`describe`'s) as `model_path`'s description, `NAME.json` beside it."""
    with open(description_path(model_path), "w", encoding="utf-8") as stream:
        json.dump(info, stream, indent=1, ensure_ascii=False)


def _detection_functions(model, input_size, data_config, decoder, category_ids):
    """The exported graph, as a whole and in its two halves: (detect, network, postprocess).

    `detect`: uint8 images [1, H, W, 3] and the image's `image_size` [1, 2] inside them -> the Object Detection
    API's outputs; `network`: the images -> the raw `class_logits` and `box_deltas`; `postprocess`: those and
    `image_size` -> the outputs (decoding, class-wise NMS). `input_size` (height, width) fixes H and W (every shape
    static, as LiteRT wants); (None, None) leaves them to each call (`detect` only: ONNX's dynamic size)."""
    static = None not in input_size
    divisor = data_config.size_divisor
    padded = (padded_size(input_size[0], divisor), padded_size(input_size[1], divisor)) if static else None
    image_spec = tf.TensorSpec([1, *input_size, 3], tf.uint8, name="images")
    size_spec = tf.TensorSpec([1, 2], tf.int32, name="image_size")

    def network(images):
        image = pad_to_multiple(tf.cast(images[0], tf.float32), divisor, data_config.resize_rule)
        predictions = model((tf.ensure_shape(image, [*padded, 3]) if static else image)[None], training=False)
        return {name: tf.cast(predictions[name], tf.float32) for name in ("class_logits", "box_deltas")}

    def postprocess(class_logits, box_deltas, image_size, input_shape=None):
        # The image's own pixels, not the padding around them: boxes are clipped to them before NMS and normalised
        # by them, as the SavedModel normalises by the original image.
        limit = tf.constant([input_size], tf.int32) if static else input_shape
        sizes = tf.clip_by_value(image_size, 1, limit)
        predictions = {"class_logits": class_logits, "box_deltas": box_deltas}
        detections = decode_in_original_pixels(model, predictions, padded or padded_size(limit[0], divisor),
                                               tf.ones([1, 2]), sizes, sizes, decoder=decoder)
        # A constant made inside the graph (one closed over would be an input for converters other than LiteRT's).
        return object_detection_outputs(detections, sizes, tf.constant(category_ids, tf.float32))

    def detect(images, image_size):
        return postprocess(**network(images), image_size=image_size, input_shape=tf.shape(images)[None, 1:3])

    detect_function = tf.function(detect, input_signature=[image_spec, size_spec])
    if not static:
        return detect_function, None, None
    network_function = tf.function(network, input_signature=[image_spec])
    outputs = network_function.get_concrete_function().structured_outputs
    prediction_specs = [
        tf.TensorSpec(outputs[name].shape, tf.float32, name=name) for name in ("class_logits", "box_deltas")
    ]
    return detect_function, network_function, tf.function(postprocess, input_signature=[*prediction_specs, size_spec])


def calibration_images(dataset, input_size, resize_rule, count, progress=False):
    """A function yielding up to `count` images of `dataset` (spread evenly over it), each fitted into
    `input_size` as `fit_to_input` does for users, as the converter's representative dataset wants them;
    `progress`: show a progress bar with images/s as the converter calibrates on them."""
    if not dataset.records:
        raise LiteRTExportError(f"{dataset.source}: the representative dataset has no images")
    subset = dataset.shard(0, max(1, len(dataset.records) // count))
    pixel = padding_pixel(resize_rule).numpy()

    def images():
        update = image_progress(min(count, len(subset.records)), progress)
        for index, image in enumerate(load_images(subset)):
            if index == count:
                return
            yield {"images": fit_to_input(image, input_size, pixel)[0][None]}
            update(index + 1)  # when the converter asks for the next: this one is calibrated

    return images


def convert_to_litert(model, function, float16=False, calibration=None):
    """The LiteRT flatbuffer of `function` (a `tf.function` over `model` with a static input signature): float32,
    float16 weights, or full integer quantisation calibrated on the images `calibration()` yields."""
    with tempfile.TemporaryDirectory() as staging:
        archive = keras.export.ExportArchive()  # a SavedModel: the converter freezes its variables
        archive.track(model)
        archive.add_endpoint(SIGNATURE, function)
        archive.write_out(staging, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=[SIGNATURE])
        if float16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        if calibration is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return _converted(converter)


def join_models(first, second):
    """One LiteRT flatbuffer running `first` then `second` (flatbuffers of one subgraph and one signature each),
    `second`'s inputs taking `first`'s outputs of the same names: its signature takes `first`'s inputs and those of
    `second`'s that `first` does not give, and gives `second`'s outputs."""
    joined = flatbuffer_utils.convert_bytearray_to_object(bytearray(first))
    tail = flatbuffer_utils.convert_bytearray_to_object(bytearray(second))
    for part in (joined, tail):
        if len(part.subgraphs) != 1 or len(part.signatureDefs) != 1:
            raise LiteRTExportError("joining LiteRT models needs one subgraph and one signature in each")
    main, appended = joined.subgraphs[0], tail.subgraphs[0]
    first_inputs = {_name(entry.name) for entry in joined.signatureDefs[0].inputs}
    first_outputs = {_name(entry.name): entry.tensorIndex for entry in joined.signatureDefs[0].outputs}
    second_inputs = {_name(entry.name): entry for entry in tail.signatureDefs[0].inputs}
    clashing = sorted((set(second_inputs) - set(first_outputs)) & first_inputs)
    if clashing:
        raise LiteRTExportError(f"joining LiteRT models: inputs {clashing} of the second are not outputs of the first "
                                f"({sorted(first_outputs)}) but share the names of its inputs")
    linked = {entry.tensorIndex: first_outputs[name] for name, entry in second_inputs.items() if name in first_outputs}
    tensor_offset, buffer_offset = len(main.tensors), len(joined.buffers)

    def tensor(index):
        return index if index < 0 else linked.get(index, index + tensor_offset)  # -1: an optional input left out

    codes = [(code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
             for code in joined.operatorCodes]
    for tensor_info in appended.tensors:
        tensor_info.buffer += buffer_offset
    joined.buffers.extend(tail.buffers)
    main.tensors.extend(appended.tensors)  # the appended inputs that `first` gives stay, unused
    for operator in appended.operators or []:
        code = tail.operatorCodes[operator.opcodeIndex]
        key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
        if key not in codes:
            codes.append(key)
            joined.operatorCodes.append(code)
        operator.opcodeIndex = codes.index(key)
        operator.inputs = [tensor(index) for index in operator.inputs]
        operator.outputs = [tensor(index) for index in operator.outputs]
        main.operators.append(operator)
    for name, entry in second_inputs.items():
        if name not in first_outputs:  # an input of the joined model
            entry.tensorIndex = tensor(entry.tensorIndex)
            main.inputs = [*main.inputs, entry.tensorIndex]
            joined.signatureDefs[0].inputs.append(entry)
    main.outputs = [tensor(index) for index in appended.outputs]
    joined.signatureDefs[0].outputs = tail.signatureDefs[0].outputs
    for entry in joined.signatureDefs[0].outputs:
        entry.tensorIndex = tensor(entry.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(joined))


def _name(name):
    return name.decode() if isinstance(name, bytes) else name


_UNSUPPORTED_OP = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


def _converted(converter):
    """`converter.convert()`; a `LiteRTExportError` naming the TensorFlow ops LiteRT cannot run."""
    try:
        return converter.convert()
    except Exception as error:  # the converter raises ConverterError, or ValueError / RuntimeError from MLIR
        ops = sorted(set(_UNSUPPORTED_OP.findall(str(error))))
        if ops:
            raise LiteRTExportError(
                f"the model uses TensorFlow ops that LiteRT's built-in ops cannot run: {', '.join(ops)}"
            ) from error
        cause = " ".join(str(error).split())[:600]
        raise LiteRTExportError(f"the LiteRT converter failed ({type(error).__name__}: {cause})") from error
