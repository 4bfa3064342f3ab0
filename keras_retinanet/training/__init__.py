"""Training a RetinaNet experiment (what `bin/train` runs): the loop, its callbacks and strategies.

`detect`, `evaluate_model`, `load_trained_model`, `model_data_config`, `read_split`, `make_optimizer` and
`WarmupStepDecay` lived here before 0.2 and are still importable from here; their homes are
`keras_retinanet.inference`, `keras_retinanet.evaluation`, `keras_retinanet.data` and `keras_retinanet.optimizers`.
"""

from keras_retinanet.data.splits import read_split
from keras_retinanet.evaluation.detector import evaluate_model
from keras_retinanet.inference import MODEL_FILE, detect, load_trained_model, model_data_config
from keras_retinanet.optimizers import WarmupStepDecay, make_optimizer
from keras_retinanet.training.backups import BackupError, Backups
from keras_retinanet.training.callbacks import NonFiniteLossError
from keras_retinanet.training.loop import CONFIG_FILE, train
from keras_retinanet.training.strategies import STRATEGIES, StrategyError, make_strategy

__all__ = [
    "BackupError", "Backups", "CONFIG_FILE", "MODEL_FILE", "STRATEGIES", "NonFiniteLossError", "StrategyError",
    "WarmupStepDecay", "detect", "evaluate_model", "load_trained_model", "make_optimizer", "make_strategy",
    "model_data_config", "read_split", "train",
]
