"""The `tf.distribute` strategies `bin/train --strategy` offers, and what each of them allows."""

import json
import os

import tensorflow as tf

from keras_retinanet.config import cut, shown
from keras_retinanet.errors import InputError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")
COMMUNICATIONS = ("auto", "ring", "nccl")


class StrategyError(InputError, ValueError):
    """A strategy that cannot run here, or a setting it cannot run with; the message says what to set."""


def make_strategy(name, communication="auto"):
    """The strategy `name` (one of `STRATEGIES`).

    `mirrored` uses every GPU of this machine, or every logical CPU device without GPUs. `multi_worker` is
    `MultiWorkerMirroredStrategy` over the cluster in `TF_CONFIG`, or over the Slurm job's tasks when run under
    Slurm (`srun`) without `TF_CONFIG`; `communication` picks its collectives (`auto`, `ring`, or `nccl` on GPUs).
    """
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")
    if communication not in COMMUNICATIONS:
        raise StrategyError(f"unknown communication {communication!r}: use one of {', '.join(COMMUNICATIONS)}")
    if communication != "auto" and name != "multi_worker":
        raise StrategyError(f"--communication={communication} is for --strategy=multi_worker, not {name}")
    if name == "multi_worker":
        return _multi_worker_strategy(communication)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])


def _multi_worker_strategy(communication):
    # Physical devices only: listing logical ones starts TensorFlow's runtime, after which collectives cannot be
    # configured ("Collective ops must be configured at program startup").
    if communication == "nccl" and not tf.config.list_physical_devices("GPU"):
        raise StrategyError("--communication=nccl needs GPUs, and this machine has none: use auto or ring")
    implementation = getattr(tf.distribute.experimental.CommunicationImplementation, communication.upper())
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=_cluster_resolver(),
            communication_options=tf.distribute.experimental.CommunicationOptions(implementation=implementation),
        )
    except RuntimeError as error:
        if "program startup" not in str(error):
            raise
        raise StrategyError("--strategy=multi_worker must be set up before TensorFlow runs anything in this process "
                            "(call train() with it first thing)") from error


def _cluster_resolver():
    """The cluster of `TF_CONFIG`, or of Slurm; a StrategyError naming TF_CONFIG and what is wrong in it."""
    if os.environ.get("TF_CONFIG"):
        _check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_PROCID" in os.environ:
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    raise StrategyError("--strategy=multi_worker needs the cluster: set TF_CONFIG in every worker's environment, or "
                        "start the workers with srun in a Slurm job")


TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
TRAINING_JOBS = ("chief", "worker")  # the tasks that train together under MultiWorkerMirroredStrategy


def _check_tf_config(text):
    """A StrategyError, naming TF_CONFIG and the value, unless `text` is a JSON cluster of chief and worker
    addresses with this process's task in it (what `TFConfigClusterResolver` would misread or fail on deep inside
    TensorFlow)."""
    def fail(problem):
        raise StrategyError(f"TF_CONFIG {problem}: it must give the cluster and this process's task, e.g. "
                            f"{TF_CONFIG_EXAMPLE}")

    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise StrategyError(f"TF_CONFIG is not JSON ({str(error)[:80]}): {cut(text)!r}") from None
    if not isinstance(config, dict):
        fail(f"is not a JSON object: {cut(text)!r}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        fail(f"'cluster' is {shown(cluster)}, not a mapping of jobs to addresses")
    for job, addresses in cluster.items():
        if job not in TRAINING_JOBS:
            fail(f"'cluster' has job {shown(job)}: multi_worker trains with {' and '.join(TRAINING_JOBS)} tasks only")
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
            fail(f"'cluster.{job}' is {shown(addresses)}, not a list of host:port addresses")
    if len(cluster.get("chief", [])) > 1:
        fail(f"'cluster.chief' has {len(cluster['chief'])} addresses: there is one chief at most")
    if not isinstance(task, dict):
        fail(f"'task' is {shown(task)}, not a mapping with type and index")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        fail(f"'task.type' is {shown(task_type)}, not a job of the cluster ({', '.join(map(repr, cluster))})")
    if isinstance(index, bool) or not isinstance(index, int):
        fail(f"'task.index' is {shown(index)}, not an integer")
    if not 0 <= index < len(cluster[task_type]):
        fail(f"'task.index' is {index}, out of range: the cluster has {len(cluster[task_type])} {task_type!r} tasks "
             f"(0 to {len(cluster[task_type]) - 1})")


def is_chief(strategy):
    """Whether this process writes the shared outputs (model, logs, backups, evaluation): the `chief` task, or
    worker 0 of a cluster without one; always outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def num_workers(strategy):
    """The processes training together: the cluster's chief and workers under `multi_worker`, else 1."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, sum(len(cluster.get(job, [])) for job in ("chief", "worker")))


def check_jit_compile(strategy, jit_compile):
    """Refuses XLA where TensorFlow cannot compile the step: replicas on CPU devices (XLA implements no collectives
    there: "Collectives are not yet implemented for CPU devices when compiling with XLA", b/194942685), which is
    every multi-replica strategy on a machine without GPUs."""
    if not jit_compile or (strategy.num_replicas_in_sync == 1 and num_workers(strategy) == 1):
        return
    if not tf.config.list_logical_devices("GPU"):
        raise StrategyError(
            f"train.jit_compile=true cannot run with {strategy.num_replicas_in_sync} replicas on CPU devices (XLA "
            "has no collectives on CPU): set train.jit_compile=false, or train on GPUs"
        )


def cluster_mean(strategy, value):
    """The mean of `value` over every replica of every worker (a collective: all workers must call it)."""
    per_replica = strategy.run(lambda: tf.constant(value, tf.float64))
    return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))
