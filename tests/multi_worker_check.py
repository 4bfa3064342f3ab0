"""Run by test_multi_worker.py as each of two worker processes (TF_CONFIG set by the test).

Prints one JSON line: the loss and gradients of a tiny RetinaNet on one global batch of 4 images, computed by the
two workers together under MultiWorkerMirroredStrategy (this worker takes images 2i and 2i+1) and by this process
alone on the whole batch.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before anything else runs TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from tiny import loss_and_gradients, split_batch, tiny_retinanet  # noqa: E402

images, targets = split_batch()  # worker 0 gets images 0-1 (four boxes), worker 1 images 2-3 (one box)
keras.utils.set_random_seed(0)
with strategy.scope():
    distributed = tiny_retinanet()
single = tiny_retinanet()
single.set_weights(distributed.get_weights())  # the chief's initial weights, which every worker starts from


def worker_batch(context):
    first = 2 * context.input_pipeline_id
    return tf.data.Dataset.from_tensor_slices(
        (images[first:first + 2], {key: value[first:first + 2] for key, value in targets.items()})
    ).batch(2)


x, y = next(iter(strategy.distribute_datasets_from_function(worker_batch)))
per_replica_loss, per_replica_gradients = strategy.run(
    tf.function(lambda x, y: loss_and_gradients(distributed, x, y)), args=(x, y)
)
distributed_loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
single_loss, single_gradients = loss_and_gradients(single, images, targets)
errors = []
for reference, gradient in zip(single_gradients, per_replica_gradients):
    gradient = strategy.reduce(tf.distribute.ReduceOp.SUM, gradient, axis=None).numpy()
    errors.append(np.abs(gradient - reference.numpy()).max() / max(np.abs(reference.numpy()).max(), 1e-12))
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "single_loss": float(single_loss),
    "distributed_loss": float(distributed_loss),
    "max_gradient_relative_error": float(max(errors)),
}))
