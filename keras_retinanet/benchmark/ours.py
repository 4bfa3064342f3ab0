"""Our detector's paths: network forward, predict, decoding, train step, SavedModel serving, LiteRT models, input
pipeline."""

import os
import statistics
import tempfile
import time

from keras_retinanet.benchmark.inputs import random_images, random_targets
from keras_retinanet.benchmark.timing import median_seconds

# The Keras dtype policy (`precision.DTYPE_POLICIES`) each benchmarked dtype runs under.
POLICY_OF_DTYPE = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _detector(setting, dtype):
    import keras

    from keras_retinanet import RetinaNet
    from keras_retinanet.backbones import ResNetBackbone

    keras.mixed_precision.set_global_policy(POLICY_OF_DTYPE[dtype])
    keras.utils.set_random_seed(0)
    return RetinaNet(ResNetBackbone(setting.depth), num_classes=setting.num_classes)


def floor(setting):
    """The matmul peaks and the network's forward FLOPs for one image."""
    from keras_retinanet.benchmark.hardware import describe_machine, forward_flops, matmul_peak

    model = _detector(setting, "float32")
    return {
        "machine": describe_machine(),
        "gflop_per_image": forward_flops(model, setting.image_size) / 1e9,
        "peak_gflops": {dtype: matmul_peak(dtype) for dtype in POLICY_OF_DTYPE},
    }


def _exportable_detector(setting):
    """The float32 detector with the label map the exports need."""
    model = _detector(setting, "float32")
    model.metadata = {"class_names": [f"class {i}" for i in range(setting.num_classes)],
                      "category_ids": list(range(1, setting.num_classes + 1))}
    return model


def forward(setting, dtype):
    """The network alone (backbone, FPN, heads) on a batch."""
    import tensorflow as tf

    model = _detector(setting, dtype)
    images = random_images(setting.batch_size, setting.image_size)
    network = tf.function(lambda x: model(x, training=False))
    return {"seconds": median_seconds(lambda: network(images)["class_logits"].numpy(), setting.repeats)}


def predict(setting, dtype):
    """`predict_on_batch` (network, box decoding, per-level top-k, class-wise NMS), and the decoding alone: the
    model's `decode_predictions` on fixed network outputs, as `predict` runs it."""
    import tensorflow as tf

    model = _detector(setting, dtype)
    images = random_images(setting.batch_size, setting.image_size)
    seconds = median_seconds(lambda: model.predict_on_batch(images), setting.repeats)
    outputs = model(images, training=False)
    image_size = tf.constant([setting.image_size, setting.image_size])
    decode = tf.function(lambda outputs: model.decode_predictions(outputs, image_size))
    decode_seconds = median_seconds(lambda: decode(outputs)["num_detections"].numpy(), setting.repeats)
    return {"seconds": seconds, "decode_seconds": decode_seconds}


def train_step(setting, dtype, jit_compile):
    """One SGD step (`train_on_batch`: labelling, losses, gradients, update) on `train_batch_size` images."""
    import keras

    model = _detector(setting, dtype)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit_compile)
    images = random_images(setting.train_batch_size, setting.image_size)
    boxes, labels = random_targets(setting.train_batch_size, setting.max_boxes, setting.image_size,
                                   setting.num_classes)
    targets = {"boxes": boxes, "labels": labels}
    return {"seconds": median_seconds(lambda: model.train_on_batch(images, targets), setting.repeats)}


def serving(setting):
    """The exported SavedModel's `serving_default` on uint8 images, beside `predict_on_batch` in the same process
    (float32; resizing set to keep the image size, as `predict` gets it)."""
    import numpy as np
    import tensorflow as tf

    from keras_retinanet.export import export_saved_model

    model = _exportable_detector(setting)
    images = random_images(setting.batch_size, setting.image_size).round()
    predict_seconds = median_seconds(lambda: model.predict_on_batch(images), setting.repeats)
    with tempfile.TemporaryDirectory() as folder:
        export_saved_model(model, folder, min_size=setting.image_size, max_size=setting.image_size, size_divisor=128,
                           resize_rule="detectron")
        serve = tf.saved_model.load(folder).signatures["serving_default"]
        pixels = tf.constant(images.astype(np.uint8))
        seconds = median_seconds(lambda: serve(images=pixels)["num_detections"].numpy(), setting.repeats)
    return {"seconds": seconds, "predict_seconds": predict_seconds}


def litert(setting, quantizations, threads):
    """Our detector exported to LiteRT (bin/export --format=tflite) in each of `quantizations`, run on a uint8
    image of the setting's size by LiteRT's interpreter (XNNPACK) with `threads` threads, beside float32
    `predict_on_batch` in the same process. int8 calibrates on 8 generated photos (timing does not depend on it)."""
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.export.litert import export_litert

    model = _exportable_detector(setting)
    images = random_images(1, setting.image_size).round()
    result = {"predict_seconds": median_seconds(lambda: model.predict_on_batch(images), setting.repeats)}
    with tempfile.TemporaryDirectory() as folder:
        calibration = None
        if "int8" in quantizations:
            calibration = read_split(synthetic_photos(os.path.join(folder, "photos"), count=8), _data_config())
        for quantization in quantizations:
            path = os.path.join(folder, f"{quantization}.tflite")
            export_litert(model, path, input_size=(setting.image_size, setting.image_size),
                          quantization=quantization, representative_data=calibration, num_calibration_images=8)
            result[quantization] = exported_files([path], threads, setting.repeats)[path]
    return result


# The exports the runtimes path times: id -> (row name, module of keras_retinanet.export, file name, arguments).
RUNTIME_EXPORTS = {
    "litert_float32": ("LiteRT float32", "litert", "model.tflite", {"quantization": "float32"}),
    "litert_int8": ("LiteRT int8", "litert", "model_int8.tflite", {"quantization": "int8"}),
    "onnx_float32": ("ONNX Runtime float32", "onnx", "model.onnx", {}),
    "openvino_float32": ("OpenVINO float32", "openvino", "model.xml", {"quantization": "float32"}),
    "openvino_int8": ("OpenVINO int8", "openvino", "model_int8.xml", {"quantization": "int8"}),
}


def saved_model_runtime(setting, config_path, threads):
    """The detector of the experiment file `config_path` (random weights; default: a ResNet-`depth` detector) as
    the SavedModel's serving_default in TensorFlow, timed as `exported_files` times a SavedModel on one random uint8
    image of the setting's size."""
    from keras_retinanet.export import export_saved_model

    model = _configured_detector(setting, config_path)
    size = setting.image_size
    with tempfile.TemporaryDirectory() as folder:
        export_saved_model(model, folder, min_size=size, max_size=size, size_divisor=32, resize_rule="detectron")
        return exported_files([folder], threads, setting.repeats, saved_model_size=size)[folder]


def export_runtime(setting, config_path, runtime, folder):
    """The same detector exported as `RUNTIME_EXPORTS[runtime]` says into `folder` (int8 calibrated on 8 generated
    photos; timing does not depend on them): {"path"}."""
    import importlib

    _, module, file_name, arguments = RUNTIME_EXPORTS[runtime]
    model = _configured_detector(setting, config_path)
    if arguments.get("quantization") == "int8":
        from keras_retinanet.data.splits import read_split

        photos = read_split(synthetic_photos(os.path.join(folder, f"photos_{module}"), count=8), _data_config())
        arguments = {**arguments, "representative_data": photos, "num_calibration_images": 8}
    path = os.path.join(folder, file_name)
    exporter = importlib.import_module(f"keras_retinanet.export.{module}")
    getattr(exporter, f"export_{module}")(model, path, input_size=(setting.image_size, setting.image_size),
                                          **arguments)
    return {"path": path}


def standalone_runner():
    """`keras_retinanet/export/litert_runner.py` loaded as the file users copy, not through the package's `export`
    (which loads TensorFlow)."""
    import importlib.util

    import keras_retinanet

    path = os.path.join(os.path.dirname(keras_retinanet.__file__), "export", "litert_runner.py")
    spec = importlib.util.spec_from_file_location("litert_runner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frameworks_loaded():
    """{"frameworks_loaded": [...]}: TensorFlow or Keras where this process loaded them (a timing to mistrust)."""
    import sys

    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras"})
    return {"frameworks_loaded": loaded} if loaded else {}


def _configured_detector(setting, config_path):
    """The float32 detector of the experiment file `config_path` for `setting.num_classes` classes, random weights
    (no download), with the label map exports need; without a file, `_exportable_detector`'s."""
    if not config_path:
        return _exportable_detector(setting)
    import keras

    from keras_retinanet.config import load_config
    from keras_retinanet.models import build_detector

    keras.utils.set_random_seed(0)
    config = load_config(config_path, ["model.backbone.weights=null"])
    return build_detector(config, [f"class {i}" for i in range(setting.num_classes)],
                          list(range(1, setting.num_classes + 1)))


def exported_files(paths, threads, repeats, saved_model_size=640):
    """Exported models (`paths`: .tflite, .onnx, OpenVINO .xml, or a SavedModel folder) on a random uint8 image of
    their input size (a SavedModel's: `saved_model_size` square): {path: {"seconds", "megabytes", "input_size"}}.
    Files run by the stand-alone `litert_runner` with their runtime and `threads` threads, before any SavedModel
    loads TensorFlow into this process."""
    import numpy as np

    runner = standalone_runner()
    timed = {}
    for path in sorted(paths, key=os.path.isdir):
        if os.path.isdir(path):
            run, input_size = _saved_model_runner(path, threads), (saved_model_size, saved_model_size)
            files, loaded = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names], {}
        else:
            detector = runner.open_detector(path, num_threads=threads)
            run, input_size = detector.detect, detector.input_size
            stem, extension = os.path.splitext(path)
            files, loaded = [path] + ([stem + ".bin"] if extension.lower() == ".xml" else []), _frameworks_loaded()
        image = np.random.default_rng(0).integers(0, 256, (*input_size, 3), dtype=np.uint8)
        timed[path] = {"seconds": median_seconds(lambda: run(image), repeats),
                       "megabytes": sum(os.path.getsize(file) for file in files) / 1e6,
                       "input_size": list(input_size), **loaded}
    return timed


def _saved_model_runner(path, threads):
    """run(image): the serving_default of the SavedModel at `path` in TensorFlow, with `threads` threads where
    TensorFlow has not started in this process yet (the benchmark's fresh processes)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow started already: its threads are fixed
        pass
    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda image: serve(images=tf.constant(image[None]))["num_detections"].numpy()


def _data_config(min_size=800, max_size=1333):
    from keras_retinanet.config import DataConfig

    return DataConfig(min_size=min_size, max_size=max_size, horizontal_flip=True)


def input_pipeline(split, batches, batch_size=2):
    """Images a second out of `training_dataset` (decode, resize to 800/1333, flip, pad, batch) on `split` (a
    `SplitConfig`), after one warm-up batch."""
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.data.pipeline import training_dataset

    dataset = read_split(split, _data_config())
    iterator = iter(training_dataset(dataset, _data_config(), batch_size))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return {"images_per_second": batches * batch_size / (time.perf_counter() - start)}


def fit_input_bound(setting, split, dtype, steps):
    """Median `fit` step times on `split` at 800/1333 (bin/train's pipeline) and on the same batches cached in
    memory: if the pipeline kept the steps waiting, the first would be longer."""
    import keras

    from keras_retinanet.data.splits import read_split
    from keras_retinanet.data.pipeline import training_dataset

    class StepTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    model = _detector(setting, dtype)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    dataset = read_split(split, _data_config())
    # The same `steps` batches on every pass (the pipeline is seeded), so no pass traces a new shape.
    live = training_dataset(dataset, _data_config(), setting.train_batch_size).take(steps)
    cached = live.cache()

    def median_step(batches):
        timer = StepTimes()
        model.fit(batches.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[timer], verbose=0, shuffle=False)
        return statistics.median(timer.times)

    median_step(cached)  # fills the cache and traces the train step for each batch shape
    return {"cached_seconds": median_step(cached), "pipeline_seconds": median_step(live)}


def synthetic_photos(folder, count=24):
    """A COCO-format split of `count` JPEG photos (shapes on textured backgrounds, 1024 x 768 and 768 x 1024) in
    `folder`, for timing the input pipeline where no real photos are given. Returns its `SplitConfig`."""
    import json

    from PIL import Image

    from keras_retinanet.config import SplitConfig
    from keras_retinanet.datasets.shapes import generate_shapes_dataset

    splits = {}
    for name, size in (("landscape", (768, 1024)), ("portrait", (1024, 768))):
        splits[name] = generate_shapes_dataset(folder, {name: count // 2}, image_size=size, min_size=64,
                                               max_size=400)[name]
    images, annotations, categories = [], [], None
    for name, path in splits.items():
        with open(path) as file:
            coco = json.load(file)
        categories = coco["categories"]
        offset = len(images)
        for image in coco["images"]:
            png = os.path.join(folder, name, image["file_name"])
            jpeg = os.path.splitext(png)[0] + ".jpg"
            Image.open(png).save(jpeg, quality=90)
            file_name = os.path.join(name, os.path.basename(jpeg))
            images.append({**image, "id": image["id"] + offset, "file_name": file_name})
        annotations += [{**a, "id": len(annotations) + i + 1, "image_id": a["image_id"] + offset}
                        for i, a in enumerate(coco["annotations"])]
    path = os.path.join(folder, "annotations", "instances_photos.json")
    with open(path, "w") as file:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, file)
    return SplitConfig(annotations=path, images=folder, format="coco")


def labelling(setting):
    """Anchor labelling of a training batch: in the model (batched, XLA, as `compute_loss` runs it) and in
    `tf.data` (`map` per image, in parallel), the design `fit` did not take."""
    import tensorflow as tf

    from keras_retinanet.boxes import AnchorLabeler
    from keras_retinanet.layers import AnchorGenerator

    size, batch = setting.image_size, setting.train_batch_size
    boxes, labels = random_targets(batch, setting.max_boxes, size, setting.num_classes)
    anchors = AnchorGenerator()([size, size])
    labeler = AnchorLabeler()
    in_model = tf.function(lambda boxes, labels: labeler(anchors, boxes, labels), jit_compile=True)
    iterator = iter(
        tf.data.Dataset.from_tensor_slices((boxes, labels))
        .repeat()
        .map(lambda boxes, labels: labeler(anchors, boxes, labels), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch)
    )
    return {
        "in_model_seconds": median_seconds(lambda: in_model(boxes, labels)["class_targets"].numpy(), setting.repeats),
        "tf_data_seconds": median_seconds(lambda: next(iterator)["class_targets"].numpy(), setting.repeats),
    }
