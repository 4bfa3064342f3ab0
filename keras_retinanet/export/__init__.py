"""Exported detectors with preprocessing, decoding and NMS inside: a SavedModel for TF Serving (`saved_model`), a
LiteRT (TFLite) model for phones and boards (`litert`), ONNX (`onnx`) and OpenVINO (`openvino`) models, the last
three run by the stand-alone `litert_runner`. `onnx` and `openvino` import their converters only when called."""

from keras_retinanet.export.litert import export_litert
from keras_retinanet.export.saved_model import export_saved_model

__all__ = ["export_litert", "export_saved_model"]
