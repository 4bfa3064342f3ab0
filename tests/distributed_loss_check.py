"""Run by test_losses.py in its own process: logical devices must be set before TensorFlow starts.

Prints one JSON line: the loss and gradients of a tiny RetinaNet on one batch, on one device and on two logical
CPU devices under MirroredStrategy.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_retinanet  # noqa: E402

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
# Replica 0 gets images 0-1 (four boxes), replica 1 images 2-3 (one box, and an image without any).
boxes = np.zeros((4, 3, 4), np.float32)
labels = np.full((4, 3), -1, np.int32)
boxes[0, :2], labels[0, :2] = [[4, 4, 36, 40], [30, 20, 60, 60]], [0, 2]
boxes[1, :2], labels[1, :2] = [[10, 10, 30, 30], [0, 30, 40, 64]], [1, 1]
boxes[2, :1], labels[2, :1] = [[20, 8, 52, 40]], [2]
targets = {"boxes": boxes, "labels": labels}


def loss_and_gradients(model, x, y):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x, y, model(x, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)


single = tiny_retinanet()
single_loss, single_gradients = loss_and_gradients(single, images, targets)

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = tiny_retinanet()
    mirrored.set_weights(single.get_weights())
dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)
x, y = next(iter(strategy.experimental_distribute_dataset(dataset)))
per_replica_loss, per_replica_gradients = strategy.run(
    tf.function(lambda x, y: loss_and_gradients(mirrored, x, y)), args=(x, y)
)
distributed_loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
errors = []
for reference, gradient in zip(single_gradients, per_replica_gradients):
    gradient = strategy.reduce(tf.distribute.ReduceOp.SUM, gradient, axis=None).numpy()
    errors.append(np.abs(gradient - reference.numpy()).max() / max(np.abs(reference.numpy()).max(), 1e-12))

labeled = [
    mirrored.labeler(mirrored.anchor_generator([64, 64]), boxes[i : i + 2], labels[i : i + 2]) for i in (0, 2)
]
print(
    json.dumps(
        {
            "replicas": strategy.num_replicas_in_sync,
            "single_loss": float(single_loss),
            "distributed_loss": float(distributed_loss),
            "max_gradient_relative_error": float(max(errors)),
            "positives_per_replica": [int(tf.reduce_sum(tf.cast(t["class_targets"] >= 0, tf.int32))) for t in labeled],
        }
    )
)
