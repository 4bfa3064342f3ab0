"""Speed figures: anchor labelling in the model vs in tf.data, and the detector's train and predict steps.

Each figure is the median of --repeats timed runs after one warm-up (compilation) run.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from keras_retinanet.cli import run_program  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 640, "Square input size in pixels.")
flags.DEFINE_integer("batch_size", 2, "Images per batch.")
flags.DEFINE_integer("max_boxes", 50, "Padded boxes per image (half of them real).")
flags.DEFINE_integer("num_classes", 80, "Number of classes.")
flags.DEFINE_integer("depth", 50, "ResNet depth of the detector timed in the train and predict steps.")
flags.DEFINE_integer("repeats", 3, "Timed runs per figure (the median is printed).")
flags.DEFINE_bool("detector", True, "Also time the whole detector's train and predict steps.")
flags.DEFINE_enum("dtype_policy", "float32", ["float32", "mixed_bfloat16"], "Keras dtype policy of the detector.")


def _median_seconds(function, repeats):
    function()  # warm-up: tracing and XLA compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _random_targets(rng, batch_size, max_boxes, image_size, num_classes):
    import numpy as np

    corners = rng.uniform(0, image_size * 0.8, (batch_size, max_boxes, 2))
    sizes = rng.uniform(16, image_size * 0.5, (batch_size, max_boxes, 2))
    boxes = np.concatenate([corners, np.minimum(corners + sizes, image_size)], axis=-1).astype(np.float32)
    labels = rng.integers(0, num_classes, (batch_size, max_boxes)).astype(np.int32)
    labels[:, max_boxes // 2 :] = -1
    return boxes, labels


def main(argv):
    del argv
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_retinanet import RetinaNet
    from keras_retinanet.backbones import ResNetBackbone
    from keras_retinanet.boxes import AnchorLabeler
    from keras_retinanet.layers import AnchorGenerator

    rng = np.random.default_rng(0)
    size, batch = FLAGS.image_size, FLAGS.batch_size
    boxes, labels = _random_targets(rng, batch, FLAGS.max_boxes, size, FLAGS.num_classes)
    anchors = AnchorGenerator()([size, size])
    labeler = AnchorLabeler()
    print(f"machine: {os.cpu_count()} CPU cores, GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"input {batch} x {size} x {size}, {anchors.shape[0]} anchors, {FLAGS.max_boxes // 2} boxes an image")

    in_model = tf.function(lambda b, l: labeler(anchors, b, l), jit_compile=True)
    seconds = _median_seconds(lambda: in_model(boxes, labels)["class_targets"].numpy(), FLAGS.repeats)
    print(f"labelling in the model (batched, XLA):        {seconds * 1000:8.1f} ms / batch")

    dataset = (
        tf.data.Dataset.from_tensor_slices((boxes, labels))
        .repeat()
        .map(lambda b, l: labeler(anchors, b, l), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch)
    )
    iterator = iter(dataset)
    seconds = _median_seconds(lambda: next(iterator)["class_targets"].numpy(), FLAGS.repeats)
    print(f"labelling in tf.data (per image, parallel):   {seconds * 1000:8.1f} ms / batch")

    if not FLAGS.detector:
        return
    keras.mixed_precision.set_global_policy(FLAGS.dtype_policy)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    model = RetinaNet(ResNetBackbone(FLAGS.depth), num_classes=FLAGS.num_classes)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=FLAGS.dtype_policy == "float32")
    targets = {"boxes": boxes, "labels": labels}
    seconds = _median_seconds(lambda: model.train_on_batch(images, targets), FLAGS.repeats)
    print(f"train step, ResNet-{FLAGS.depth} ({FLAGS.dtype_policy}):          {seconds * 1000:8.1f} ms / batch")
    seconds = _median_seconds(lambda: model.predict_on_batch(images), FLAGS.repeats)
    print(f"predict step with decoding and NMS:           {seconds * 1000:8.1f} ms / batch")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
