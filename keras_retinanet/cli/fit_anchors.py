"""Fits the anchors to a dataset's boxes and proposes the input size its small boxes need.

    bin/fit_anchors --config=experiment.yaml [--split=train] [--set=data.min_size=600 ...] [--output=anchors.yaml]

Reads the split as bin/train would (the bad-input policy of --config) and searches the anchor sizes (one per
pyramid level P3-P7), scales and aspect ratios, their counts kept, that give the most boxes a best anchor IoU of at
least model.matcher.positive_threshold at their resized and padded input size, then the highest mean best IoU
(keras_retinanet.data.anchor_fitting). Where too few of the small boxes can be matched at P3's stride, it also
proposes data.min_size / data.max_size and their cost in pixels. Prints the coverage before and after and the YAML
to paste into the config (--output writes it to a file); model.anchors.fit: true does the same at the start of
training.
"""

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Experiment YAML file: the split, input size, anchors and matcher.")
flags.DEFINE_enum("split", "train", ["train", "val"], "Which split of --config to fit to.")
flags.DEFINE_multi_string("set", [], "Override a config value: --set=data.min_size=600 (repeatable).")
flags.DEFINE_integer("seed", 0, "Seed of the search (the same seed, the same anchors).")
flags.DEFINE_integer("generations", 300, "Generations of the evolutionary search.", lower_bound=0)
flags.DEFINE_string("output", None, "Also write the YAML to this file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.config is None:
        raise app.UsageError("give --config, the experiment whose data and anchors to fit")

    from keras_retinanet.config import load_config
    from keras_retinanet.data.anchor_fitting import fit_anchors, fitted_yaml, format_fit
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.data.statistics import InputGeometry
    from keras_retinanet.models.factory import build_anchor_generator, build_matcher

    config = load_config(FLAGS.config, FLAGS.set)
    dataset = read_split(getattr(config.data, FLAGS.split), config.data)
    geometry = InputGeometry(config.data, build_anchor_generator(config.model.anchors),
                             build_matcher(config.model.matcher))
    print(geometry.describe())
    fitted = fit_anchors(dataset, geometry, seed=FLAGS.seed, generations=FLAGS.generations, progress=True)
    print(format_fit(fitted))
    text = fitted_yaml(fitted)
    print(f"\nto use them, put this in {FLAGS.config}:\n{text}", end="")
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as file:
            file.write(text)
        print(f"wrote {FLAGS.output}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
