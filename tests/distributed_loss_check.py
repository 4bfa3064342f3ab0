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
from tiny import loss_and_gradients, split_batch, tiny_retinanet  # noqa: E402

keras.utils.set_random_seed(0)
images, targets = split_batch()  # replica 0 gets images 0-1 (four boxes), replica 1 images 2-3 (one box)
boxes, labels = targets["boxes"], targets["labels"]
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
