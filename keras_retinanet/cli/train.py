"""Trains a RetinaNet experiment: `bin/train --config=FILE --model_dir=DIR [--set=key=value ...]`.

Running the same command again resumes from the last backup in DIR (written every train.checkpoint_every
iterations; if the newest cannot be read, from the one before, said in the log); --restart starts over. The resolved
config is written to DIR/config.yaml and stored in DIR/model.keras.

Fine-tuning: --set=model.init_from=SOURCE starts from a trained detector (a .keras file, a model directory, a
torchvision RetinaNet .pth, or a name bin/fetch_weights knows, such as retinanet_resnet50_fpn_coco): its architecture
and weights, the classes of your data (a class named as one of the source's keeps its weights; the others start
from the prior). What was loaded, matched and initialised anew is printed and heads DIR/config.yaml.
train.freeze=[backbone, ...] keeps components as they are.

Several machines: run the same command on every worker with --strategy=multi_worker and TF_CONFIG set (or under
srun in a Slurm job), DIR on a filesystem they all see; train.batch_size is the global batch.
"""

import os

from absl import flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Experiment YAML file (see configs/).", required=True)
flags.DEFINE_string("model_dir", None, "Directory for the config, logs, backups and the final model.keras.",
                    required=True)
flags.DEFINE_multi_string("set", [], "Override a config value: --set=train.batch_size=8 (repeatable).")
flags.DEFINE_enum("strategy", "default", ["default", "one_device", "mirrored", "multi_worker"],
                  "tf.distribute strategy: mirrored uses every GPU of this machine, or every logical CPU device "
                  "without GPUs; multi_worker trains on several machines (MultiWorkerMirroredStrategy) with the "
                  "cluster from TF_CONFIG, or from Slurm under srun.")
flags.DEFINE_enum("communication", "auto", ["auto", "ring", "nccl"],
                  "Collectives of --strategy=multi_worker: auto, ring (gRPC), nccl (GPUs).")
flags.DEFINE_integer("cpu_devices", 1, "Split the CPU into this many logical devices (to try --strategy=mirrored "
                                       "without GPUs).")
flags.DEFINE_bool("restart", False, "Start from the beginning although DIR holds backups (they are moved aside to "
                                    "DIR/backup.discarded-<time>, not deleted).")
flags.DEFINE_integer("verbose", 1, "Keras verbosity: 0 silent, 1 progress bar, 2 one line per checkpoint interval.")


def main(argv):
    del argv
    import tensorflow as tf

    if FLAGS.cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)

    from keras_retinanet.config import ConfigError, given_settings, load_config, shown
    from keras_retinanet.training import train
    from keras_retinanet.training.strategies import is_chief

    config = load_config(FLAGS.config, FLAGS.set)
    weights = config.model.backbone.weights
    if weights not in (None, "imagenet") and not os.path.isfile(weights):  # else an error once the model is built
        raise ConfigError(f"{FLAGS.config}: 'model.backbone.weights' must be null, imagenet or a weights file, got "
                          f"{shown(weights)}, which is no file")
    model = train(config, FLAGS.model_dir, strategy=FLAGS.strategy, verbose=FLAGS.verbose,
                  communication=FLAGS.communication, restart=FLAGS.restart,
                  given=given_settings(FLAGS.config, FLAGS.set))
    if is_chief(model.distribute_strategy):
        print(f"model written to {FLAGS.model_dir}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
