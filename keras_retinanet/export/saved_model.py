"""SavedModel export for TF Serving: preprocessing, the network, box decoding and NMS in one graph.

Two signatures take raw images and return the TF Object Detection API's outputs, in the original images:

- `serving_default`: `images`, a uint8 batch [B, H, W, 3] (RGB, any size, one size per batch);
- `image_bytes`: `encoded_images`, a string batch [B] of encoded images (JPEG, PNG, GIF, BMP, WebP; grayscale and
  RGBA become RGB), each processed on its own so that a batch may mix sizes.

Outputs: `detection_boxes` [B, D, 4] (ymin, xmin, ymax, xmax) normalised by the original image size,
`detection_scores` [B, D], `detection_classes` [B, D] (the dataset's category ids as float32, -1 for padding) and
`num_detections` [B] (float32, as the Object Detection API has it); D = max_detections, sorted by score. An empty
batch gives empty outputs. Images over the pixel limit set at export are refused with INVALID_ARGUMENT naming their
size, encoded ones before they are decoded, from what decoding them would allocate (`keras_retinanet.data.
image_header`: every frame of a GIF counts); a small file that declares a huge image costs no memory, and a format
whose size cannot be read first is refused.

Images are resized and padded as in training (`keras_retinanet.data.pipeline`), and detections come from the one
detection path, `keras_retinanet.inference.detections_in_original_pixels` (the model's `decode_predictions`:
per-level top-k, score threshold, class-wise NMS, all in float32), so the SavedModel gives what `bin/predict` and
`bin/evaluate` give. The label map travels in the SavedModel's `assets/` as `label_map.json`
({category_id: name}) and `label_map.pbtxt` (the Object Detection API's `StringIntLabelMap` text format).
"""

import dataclasses
import json
import os
import tempfile

import keras
import tensorflow as tf

from keras_retinanet.config import ConfigError
from keras_retinanet.data.classes import write_label_map
from keras_retinanet.data.image_header import encoded_image_size
from keras_retinanet.data.pipeline import decode_pixels, preprocess_image
from keras_retinanet.inference import detections_in_original_pixels, model_data_config, stored_data_config
from keras_retinanet.errors import ModelError
from keras_retinanet.layers import DetectionDecoder

LABEL_MAP_JSON = "label_map.json"
LABEL_MAP_PBTXT = "label_map.pbtxt"


def export_saved_model(model, output_dir, min_size=None, max_size=None, size_divisor=None, resize_rule=None,
                       score_threshold=None, iou_threshold=None, max_detections=None, max_image_pixels=None):
    """Writes `model` (a `RetinaNet` carrying `class_names` and `category_ids` in its metadata) as a SavedModel.

    Args:
        output_dir: the SavedModel directory (for TF Serving: MODEL_BASE/<version>).
        min_size, max_size, size_divisor, resize_rule: resize and padding settings (see `DataConfig`); default:
            the data config the model was trained with (or converted with).
        score_threshold, iou_threshold, max_detections: default: the model's `decoder` settings. Candidates per
            pyramid level before NMS are the decoder's `pre_nms_top_k`.
        max_image_pixels: images with more pixels are refused (INVALID_ARGUMENT naming the size) before they are
            decoded, from the size their header declares; default: the training data's limit
            (`data.max_image_pixels`, or its default for a model without a stored config).
    """
    if None in (min_size, max_size, size_divisor, resize_rule):
        data_config = model_data_config(model)
    else:  # everything given: a model without a stored config (not trained by bin/train) exports too
        data_config = stored_data_config(model)
    given = {"min_size": min_size, "max_size": max_size, "size_divisor": size_divisor, "resize_rule": resize_rule,
             "max_image_pixels": max_image_pixels}
    data_config = dataclasses.replace(data_config,
                                      **{name: value for name, value in given.items() if value is not None})
    if data_config.max_image_pixels < 1:
        raise ConfigError(f"max_image_pixels must be positive, got {data_config.max_image_pixels}")
    labels = label_map(model)
    decoder = export_decoder(model, score_threshold, iou_threshold, max_detections)
    detector = _ServingDetector(model, data_config, decoder, list(labels))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", detector.detect_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "image_bytes", detector.detect_encoded_images,
        input_signature=[tf.TensorSpec([None], tf.string, name="encoded_images")],
    )
    with tempfile.TemporaryDirectory() as staging:
        json_path, pbtxt_path = _write_label_maps(staging, labels)
        # ExportArchive.track keeps only variables and lookup tables; the archive's root object is what the
        # SavedModel saves, so assets attached to it are copied into assets/ (and revive as `.asset_path`).
        archive._tf_trackable.label_map_json = tf.saved_model.Asset(json_path)
        archive._tf_trackable.label_map_pbtxt = tf.saved_model.Asset(pbtxt_path)
        archive.write_out(output_dir, verbose=False)


class _ServingDetector:
    """The endpoints' graph: raw images in, Object Detection API outputs out. `data_config` (a `DataConfig`) says
    how images are resized and padded (`preprocess_image`) and the most pixels one may have."""

    def __init__(self, model, data_config, decoder, category_ids):
        self.model = model
        self.data_config = data_config
        self.decoder = decoder
        self.category_ids = tf.constant(category_ids, tf.float32)

    def detect_images(self, images):
        """Detections for a uint8 batch [B, H, W, 3] of images of one size; none for an empty batch."""
        shape = tf.shape(images, tf.int64)
        with tf.control_dependencies(self._size_check("images", shape[1], shape[2])):
            return tf.cond(tf.shape(images)[0] > 0, lambda: self._detect_batch(images), self._no_detections)

    def _detect_batch(self, images):
        model_inputs, scales, content_sizes = tf.map_fn(
            lambda image: preprocess_image(image, self.data_config), images,
            fn_output_signature=(
                tf.TensorSpec([None, None, 3], tf.float32), tf.TensorSpec([2], tf.float32), tf.TensorSpec([2], tf.int32)
            ),
        )
        original_sizes = tf.tile(tf.shape(images)[None, 1:3], [tf.shape(images)[0], 1])
        return self._detect(model_inputs, scales, content_sizes, original_sizes)

    def detect_encoded_images(self, encoded_images):
        """Detections for a string batch [B] of encoded images, each decoded and run on its own."""
        num_detections = self.decoder.max_detections

        def detect_one(encoded):
            with tf.control_dependencies(self._size_check("encoded_images", *encoded_image_size(encoded))):
                image = decode_pixels(encoded)
            model_input, scale, content_size = preprocess_image(image, self.data_config)
            detections = self._detect(model_input[None], scale[None], content_size[None], tf.shape(image)[None, :2])
            return {key: value[0] for key, value in detections.items()}

        return tf.map_fn(
            detect_one, encoded_images,
            fn_output_signature={
                "detection_boxes": tf.TensorSpec([num_detections, 4], tf.float32),
                "detection_scores": tf.TensorSpec([num_detections], tf.float32),
                "detection_classes": tf.TensorSpec([num_detections], tf.float32),
                "num_detections": tf.TensorSpec([], tf.float32),
            },
        )

    def _size_check(self, input_name, height, width, frames=1):
        """Assertions (INVALID_ARGUMENT naming the size) that `frames` of `height` x `width` pixels are within the
        limit, and that the format was known (`encoded_image_size` gives -1 for any other)."""
        limit = self.data_config.max_image_pixels
        message = tf.strings.format(
            f"{input_name}: an image of {{}} x {{}} pixels (width x height) in {{}} frame(s) is over the limit of "
            f"{limit} pixels set at export (bin/export --max_image_pixels)", (width, height, frames))
        return [
            tf.debugging.Assert(height >= 0, [f"{input_name}: not an image of a format whose size can be checked "
                                              "before decoding (JPEG, PNG, GIF, BMP, WebP without animation)"]),
            tf.debugging.Assert(frames * height * width <= limit, [message]),
        ]

    def _no_detections(self):
        num_detections = self.decoder.max_detections
        return {
            "detection_boxes": tf.zeros([0, num_detections, 4]),
            "detection_scores": tf.zeros([0, num_detections]),
            "detection_classes": tf.zeros([0, num_detections]),
            "num_detections": tf.zeros([0]),
        }

    def _detect(self, model_inputs, scales, content_sizes, original_sizes):
        """Detections for padded `model_inputs` [B, Hp, Wp, 3], resized by `scales` [B, 2] (y, x) to `content_sizes`
        [B, 2] (inside the padding) from images of `original_sizes` [B, 2] (height, width)."""
        detections = detections_in_original_pixels(
            self.model, model_inputs, scales, content_sizes, original_sizes, decoder=self.decoder
        )
        return object_detection_outputs(detections, original_sizes, self.category_ids)


def object_detection_outputs(detections, original_sizes, category_ids):
    """The Object Detection API's outputs from `detections` (`xyxy` boxes in pixels of images of `original_sizes`
    [B, 2]) and the dataset's `category_ids` [K] (float32) of the model's labels."""
    limits = tf.tile(tf.cast(original_sizes, tf.float32), [1, 2])[:, None, :]  # (h, w, h, w)
    valid = detections["classes"] >= 0
    return {
        "detection_boxes": tf.gather(detections["boxes"], [1, 0, 3, 2], axis=-1) / limits,
        "detection_scores": detections["scores"],
        "detection_classes": tf.where(valid, tf.gather(category_ids, tf.maximum(detections["classes"], 0)), -1.0),
        "num_detections": tf.cast(detections["num_detections"], tf.float32),
    }


def export_decoder(model, score_threshold=None, iou_threshold=None, max_detections=None, per_image_nms=False):
    """A `DetectionDecoder` with the model's settings, except those given."""
    decoder = model.decoder
    return DetectionDecoder(
        score_threshold=decoder.score_threshold if score_threshold is None else score_threshold,
        pre_nms_top_k=decoder.pre_nms_top_k,
        iou_threshold=decoder.iou_threshold if iou_threshold is None else iou_threshold,
        max_detections=decoder.max_detections if max_detections is None else max_detections,
        min_box_size=decoder.min_box_size,
        per_image_nms=per_image_nms,
    )


def label_map(model):
    """{category_id: class name} from the metadata bin/train stores in the model, in label order."""
    category_ids = model.metadata.get("category_ids")
    class_names = model.metadata.get("class_names")
    if category_ids is None or class_names is None or not len(category_ids) == len(class_names) == model.num_classes:
        raise ModelError(
            f"the model's metadata needs `category_ids` and `class_names`, one per class ({model.num_classes}), for "
            "the exported detection_classes and label map, as bin/train stores them"
        )
    return {int(i): str(name) for i, name in zip(category_ids, class_names)}


def _write_label_maps(folder, label_map):
    """label_map.json ({category_id: name}) and label_map.pbtxt in `folder`; returns their paths."""
    json_path = os.path.join(folder, LABEL_MAP_JSON)
    with open(json_path, "w", encoding="utf-8") as stream:
        json.dump({str(i): name for i, name in label_map.items()}, stream, indent=1, ensure_ascii=False)
    pbtxt_path = os.path.join(folder, LABEL_MAP_PBTXT)
    write_label_map(pbtxt_path, list(label_map), list(label_map.values()))
    return json_path, pbtxt_path
