"""`train`: an experiment config in, a trained, resumable, periodically evaluated model out."""

import math
import os

import keras

from keras_retinanet.config import dump_config, to_dict
from keras_retinanet.data.pipeline import training_dataset
from keras_retinanet.data.splits import official_ground_truth, read_split
from keras_retinanet.inference import MODEL_FILE
from keras_retinanet.models import build_retinanet
from keras_retinanet.optimizers import make_optimizer
from keras_retinanet.precision import dtype_policy_scope
from keras_retinanet.training.callbacks import LearningRateLogger, PeriodicEvaluation, StopOnNonFiniteLoss
from keras_retinanet.training.strategies import make_strategy

CONFIG_FILE = "config.yaml"
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def train(config, model_dir, strategy="default", verbose=1):
    """Trains the experiment `config` (an `ExperimentConfig`) into `model_dir`; resumes if it holds a backup.

    Writes `config.yaml` (the resolved config), TensorBoard logs in `logs/`, a resumable backup in `backup/` at
    every `train.checkpoint_every` iterations, and the final `model.keras`. Returns the trained model.
    """
    train_config = config.train
    if train_config.eval_every % train_config.checkpoint_every:
        raise ValueError(
            f"train.eval_every ({train_config.eval_every}) must be a multiple of train.checkpoint_every "
            f"({train_config.checkpoint_every})"
        )
    train_set = read_split(config.data.train, config.data)
    val_set = read_split(config.data.val, config.data) if config.data.val.annotations else None
    os.makedirs(model_dir, exist_ok=True)
    dump_config(config, os.path.join(model_dir, CONFIG_FILE))

    keras.utils.set_random_seed(config.data.seed)  # the same initial weights for the same config
    strategy = make_strategy(strategy)
    with strategy.scope(), dtype_policy_scope(train_config.dtype_policy):
        model = build_retinanet(config.model, train_set.num_classes)
        model.metadata = {
            "class_names": list(train_set.class_names),
            "category_ids": [int(i) for i in train_set.category_ids],
            "config": to_dict(config),
        }
        # Under mixed_float16, compile wraps the optimizer in a LossScaleOptimizer (dynamic loss scaling).
        model.compile(optimizer=make_optimizer(train_config), jit_compile=train_config.jit_compile)

    steps_per_epoch = train_config.checkpoint_every
    epochs = math.ceil(train_config.iterations / steps_per_epoch)
    callbacks = [StopOnNonFiniteLoss(), LearningRateLogger()]
    if val_set is not None:
        callbacks.append(
            PeriodicEvaluation(val_set, official_ground_truth(config.data.val), config.data, train_config.batch_size,
                               train_config.eval_every, epochs * steps_per_epoch, os.path.join(model_dir, "logs", "eval"))
        )
    callbacks += [
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq=min(100, steps_per_epoch)),
        keras.callbacks.BackupAndRestore(
            os.path.join(model_dir, "backup"), save_freq="epoch", double_checkpoint=True, delete_checkpoint=False
        ),
    ]
    model.fit(
        training_dataset(train_set, config.data, train_config.batch_size),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, with its seed
    )
    model.save(os.path.join(model_dir, MODEL_FILE))
    return model

