"""`train`: an experiment config in, a trained, resumable, periodically evaluated model out."""

import dataclasses
import math
import os

import keras
import tensorflow as tf

from keras_retinanet.config import ConfigError, dump_config, load_config, shown
from keras_retinanet.data.anchor_fitting import fit_anchors, format_fit
from keras_retinanet.data.pipeline import needed_max_boxes, training_dataset
from keras_retinanet.data.splits import official_ground_truth, read_split
from keras_retinanet.data.statistics import InputGeometry
from keras_retinanet.inference import MODEL_FILE
from keras_retinanet.models import build_detector
from keras_retinanet.models.factory import build_anchor_generator, build_matcher
from keras_retinanet.models.transfer import freeze
from keras_retinanet.optimizers import make_optimizer
from keras_retinanet.precision import DTYPE_POLICIES, dtype_policy_scope  # noqa: F401 (once defined here)
from keras_retinanet.training.backups import Backups
from keras_retinanet.training.callbacks import (
    BackupEveryEpoch, LearningRateLogger, PeriodicEvaluation, StopOnNonFiniteLoss,
)
from keras_retinanet.training.fine_tuning import (
    given_by_default, read_source, report_lines, resolved_config, start_from,
)
from keras_retinanet.training.strategies import (
    StrategyError, check_jit_compile, cluster_mean, is_chief, make_strategy, num_workers,
)

CONFIG_FILE = "config.yaml"


def train(config, model_dir, strategy="default", verbose=1, communication="auto", restart=False, callbacks=(),
          given=None):
    """Trains the experiment `config` (an `ExperimentConfig`) into `model_dir`; resumes if it holds a backup.

    With `model.init_from`, training starts from that detector (`keras_retinanet.training.fine_tuning`): its
    architecture under the settings the user gave (`given`: the dotted keys, as `config.given_settings` reads them
    from the files; default: the settings that differ from the defaults), its weights, its class rows for the
    classes of the same name. `train.freeze` keeps components as they are; a resumed run must freeze the same.

    Writes `config.yaml` (the resolved config; after fine-tuning, headed by what was loaded, matched by class name
    and initialised anew, also printed and stored in the model's metadata as `init_from`), TensorBoard logs in
    `logs/`, a backup in `backup/` at every `train.checkpoint_every` iterations (see `Backups`), and the final
    `model.keras`. Returns the trained model.
    A resumed run continues with the batches the interrupted one would have seen next. `restart` moves the
    backups aside (`backup.discarded-<time>`) and starts from the beginning.

    `strategy` is one of `STRATEGIES` (`communication` picks the collectives of `multi_worker`). With several
    workers, each reads its own share of the training images (`DetectionDataset.shard`) with its own shuffling
    seed, `train.batch_size` is the global batch, and only the chief writes into `model_dir`, which every worker
    must see (a shared filesystem): the workers resume from the chief's backup.

    `callbacks` are further Keras callbacks, run before the built-in ones (so they see a non-finite loss before
    training stops on it).
    """
    # First: MultiWorkerMirroredStrategy must be created before TensorFlow runs anything.
    strategy = make_strategy(strategy, communication)
    train_config = config.train
    _check_settings(config)
    check_jit_compile(strategy, train_config.jit_compile)
    backups = Backups(os.path.join(model_dir, "backup"))
    if not restart:
        _check_same_freeze(model_dir, backups, train_config.freeze)
    source = None
    if config.model.init_from:
        source = read_source(config.model.init_from)
        config = resolved_config(config, source, given_by_default(config) if given is None else given)
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
    chief = is_chief(strategy)
    config, train_set = _training_split(config, model_dir, resumed=bool(backups.epochs()) and not restart)
    val_set = read_split(config.data.val, config.data) if config.data.val.annotations and chief else None
    if chief:
        os.makedirs(model_dir, exist_ok=True)
        if restart and (aside := backups.move_aside()):
            print(f"--restart: the backups were moved to {aside}")

    model, fine_tuned = _compiled_model(config, strategy, train_set, source)
    source = None  # frees the source model
    if chief:
        notes = report_lines(fine_tuned) if fine_tuned else []
        dump_config(config, os.path.join(model_dir, CONFIG_FILE), comments=notes)
        for line in notes:
            print(line)
    initial_epoch = _resume(model, backups, strategy)

    steps_per_epoch = train_config.checkpoint_every
    epochs = math.ceil(train_config.iterations / steps_per_epoch)
    model.fit(
        _distributed_training_dataset(strategy, train_set, config.data, train_config.batch_size,
                                      skip_batches=initial_epoch * steps_per_epoch),
        initial_epoch=initial_epoch,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=_callbacks(config, model_dir, backups if chief else None, val_set, epochs, callbacks),
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, with its seed
    )
    if chief:
        model.save(os.path.join(model_dir, MODEL_FILE))
    return model


def _check_settings(config):
    """A `ConfigError` for settings that contradict each other (the user's, before fine-tuning resolves them)."""
    train_config = config.train
    if train_config.eval_every % train_config.checkpoint_every:
        raise ConfigError(
            f"train.eval_every ({train_config.eval_every}) must be a multiple of train.checkpoint_every "
            f"({train_config.checkpoint_every})"
        )
    if config.model.anchors.fit and config.model.init_from:
        raise ConfigError("model.anchors.fit cannot be set with model.init_from: the anchors are the source model's "
                          "(its head was trained on them); fit them when training from scratch")


def _training_split(config, model_dir, resumed):
    """(config, the training split): the split read, `data.max_boxes` resolved to what it needs and the anchors
    fitted to it (`_with_fitted_anchors`), as the run saves the config."""
    train_set = read_split(config.data.train, config.data)
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, max_boxes=needed_max_boxes(train_set, config.data.max_boxes)))
    return _with_fitted_anchors(config, train_set, model_dir, resumed), train_set


def _with_fitted_anchors(config, train_set, model_dir, resumed):
    """`config` with, under `model.anchors.fit`, the anchors fitted to `train_set` (`anchor_fitting.fit_anchors`,
    seeded by `data.seed`), or those the run in `model_dir` fitted when it is `resumed`. Fine-tuning keeps the
    source's anchors (`model.init_from`: `_check_settings` refused `fit` given with it; a source trained with `fit`
    passes it on)."""
    anchors = config.model.anchors
    if not anchors.fit or config.model.init_from:
        return config
    saved = os.path.join(model_dir, CONFIG_FILE)
    if resumed and os.path.isfile(saved):
        fitted = load_config(saved).model.anchors
        values = {name: getattr(fitted, name) for name in ("sizes", "scales", "aspect_ratios")}
        print(f"model.anchors.fit: resuming with the anchors fitted at the start of the run ({saved})")
    else:
        geometry = InputGeometry(config.data, build_anchor_generator(anchors), build_matcher(config.model.matcher))
        fitted = fit_anchors(train_set, geometry, seed=config.data.seed)
        print(f"model.anchors.fit: anchors fitted to the training boxes\n{format_fit(fitted)}")
        values = fitted.after
    return dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                 anchors=dataclasses.replace(anchors, **values)))


def _compiled_model(config, strategy, train_set, source):
    """The model `config` describes for `train_set`'s classes, built (from `source`'s weights where given: returns
    the `start_from` report too, else None), frozen as `train.freeze` says and compiled, its optimizer built."""
    keras.utils.set_random_seed(config.data.seed)  # the same initial weights for the same config
    with strategy.scope(), dtype_policy_scope(config.train.dtype_policy):
        model = build_detector(config, train_set.class_names, train_set.category_ids)
        fine_tuned = start_from(source, model, train_set.class_names, config.model.init_components) if source else None
        if fine_tuned:
            model.metadata["init_from"] = fine_tuned
        freeze(model, config.train.freeze)
        # Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer (dynamic loss scaling).
        model.compile(optimizer=make_optimizer(config.train), jit_compile=config.train.jit_compile,
                      gradient_norms=config.train.log_gradient_norms)
        model.optimizer.build(model.trainable_variables)  # a backup holds the optimizer's state too
    return model, fine_tuned


def _callbacks(config, model_dir, backups, val_set, epochs, extra):
    """`extra`, then: stop on a non-finite loss, log the learning rate, and where given, back up into `backups`
    (the chief's: also TensorBoard logs) and evaluate on `val_set`."""
    steps_per_epoch = config.train.checkpoint_every
    callbacks = [*extra, StopOnNonFiniteLoss(), LearningRateLogger()]
    if backups is not None:
        callbacks.append(BackupEveryEpoch(backups))
    if val_set is not None:
        callbacks.append(
            PeriodicEvaluation(val_set, official_ground_truth(config.data.val), config.data, config.train.batch_size,
                               config.train.eval_every, epochs * steps_per_epoch,
                               os.path.join(model_dir, "logs", "eval"))
        )
    if backups is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq=min(100, steps_per_epoch))
        )
    return callbacks


def _check_same_freeze(model_dir, backups, frozen):
    """A `ConfigError` if a run with backups froze other components than `frozen`: its backup holds the optimizer
    state of the weights it trained."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not backups.epochs() or not os.path.isfile(path):
        return
    before = load_config(path).train.freeze
    if tuple(before) != tuple(frozen):
        raise ConfigError(f"{path}: this run started with train.freeze = {shown(list(before))}, now it is "
                          f"{shown(list(frozen))}: resume with the same, or start over with --restart")


def _resume(model, backups, strategy):
    """Loads the newest readable backup (every worker reads the chief's, once the chief has moved a discarded one
    aside) and returns its epoch; with several workers, checks that all resumed at the same epoch, so that none
    trains on other weights than the chief's."""
    if num_workers(strategy) == 1:
        return backups.restore(model)
    cluster_mean(strategy, 0)  # a barrier: the chief has handled --restart
    epoch = backups.restore(model)
    mean = cluster_mean(strategy, epoch)
    if mean != epoch or cluster_mean(strategy, epoch**2) != epoch**2:  # all the same?
        raise StrategyError(
            f"{backups.directory}: this worker resumed at epoch {epoch}, the workers at {mean} on average: every "
            "worker must see the chief's model_dir (put it on a filesystem they share)"
        )
    return epoch


def _distributed_training_dataset(strategy, train_set, data_config, batch_size, skip_batches=0):
    """The training batches; with several workers, each worker's own: its share of the images, shuffled with the
    seed plus its index, in batches of its replicas' share of the global `batch_size`."""
    workers = num_workers(strategy)
    if workers == 1:
        return training_dataset(train_set, data_config, batch_size, skip_batches)
    if batch_size % strategy.num_replicas_in_sync:
        raise StrategyError(f"train.batch_size={batch_size} cannot be split over {strategy.num_replicas_in_sync} "
                            "replicas: make it a multiple of the replica count")

    def worker_dataset(context):
        index = context.input_pipeline_id
        return training_dataset(train_set.shard(index, context.num_input_pipelines),
                                dataclasses.replace(data_config, seed=data_config.seed + index),
                                context.get_per_replica_batch_size(batch_size),
                                skip_batches * context.num_replicas_in_sync // context.num_input_pipelines)

    return strategy.distribute_datasets_from_function(worker_dataset)
