"""Checks a dataset with the bad-input policy and shows it as the model will see it.

    bin/inspect_dataset --format=voc --annotations=DIR --images=DIR [--classes=FILE] [--strict]
    bin/inspect_dataset --config=experiment.yaml --split=train [--set=data.min_size=600 ...]

Prints the number of images (and negatives: images without boxes), boxes and ignore regions per class, a histogram
of box sizes (sqrt(area) in pixels of the resized input: data.min_size / data.max_size), COCO's small / medium /
large counts, aspect ratios, the anchor coverage (share of boxes whose best anchor reaches the matcher's IoU
thresholds, model.matcher.positive_threshold and negative_threshold, at each image's resized and padded size) and
what the bad-input policy skipped or changed. The resize rule, anchors and thresholds are those of --config, or
the defaults of ExperimentConfig (keras_retinanet.config) without it; --format and the other data flags override
the split of --config.

--draw=N --output_dir=DIR writes the first N images, resized and padded as the model sees them, to PNG files:
ground-truth boxes in their class colour, captioned with the class and the IoU of their best anchor; the anchors
they match (IoU >= model.matcher.positive_threshold) as thin cyan outlines; the best anchor of each box in magenta (even
below the threshold); ignore regions as dashed outlines.

--draw_augmented=N --output_dir=DIR writes N training images as the training pipeline gives them to the model
(shuffled by data.seed, augmented by data.augmentation, resized and padded) to augmented_0000.png ...: their boxes
in their class colours, captioned with the class, and ignore regions as dashed outlines.
"""

import dataclasses

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Experiment YAML file: the split, anchors and input size (default: the defaults "
                                    "of ExperimentConfig).")
flags.DEFINE_enum("split", "train", ["train", "val"], "Which split of --config to read.")
flags.DEFINE_multi_string("set", [], "Override a config value: --set=data.min_size=600 (repeatable).")
flags.DEFINE_enum("format", None, ["coco", "voc", "csv", "tfrecord"], "Annotation format (data.<split>.format).")
flags.DEFINE_string("annotations", None, "Annotation file or folder (data.<split>.annotations).")
flags.DEFINE_string("images", None, "Image folder (data.<split>.images).")
flags.DEFINE_string("classes", None, "Class file (data.<split>.classes); default: the classes found in the data.")
flags.DEFINE_boolean("strict", None, "Every skip or change of the bad-input policy is an error (data.strict).")
flags.DEFINE_boolean("verify_images", None, "Decode every image, not only its header (data.verify_images).")
flags.DEFINE_integer("draw", 0, "Draw the first N images with their boxes and matched anchors.", lower_bound=0)
flags.DEFINE_integer("draw_augmented", 0, "Draw N training images as augmented by data.augmentation (the training "
                                         "pipeline's output), with their boxes.", lower_bound=0)
flags.DEFINE_string("output_dir", None, "Folder for the --draw and --draw_augmented PNG files.")


def main(argv):
    del argv
    for name in ("draw", "draw_augmented"):
        if getattr(FLAGS, name) and not FLAGS.output_dir:
            raise app.UsageError(f"--{name} needs --output_dir")
    if FLAGS.config is None and FLAGS.annotations is None:
        raise app.UsageError("give --annotations (with --format, --images) or --config")

    from keras_retinanet.config import load_config
    from keras_retinanet.data import DataPolicy, read_dataset
    from keras_retinanet.data.pictures import draw_augmented, draw_dataset
    from keras_retinanet.data.statistics import InputGeometry, dataset_statistics, format_statistics
    from keras_retinanet.models.factory import build_anchor_generator, build_matcher

    config = load_config(FLAGS.config, FLAGS.set)
    given = {name: getattr(FLAGS, name) for name in ("format", "annotations", "images", "classes")}
    split = dataclasses.replace(getattr(config.data, FLAGS.split),
                                **{name: value for name, value in given.items() if value is not None})
    data = dataclasses.replace(config.data, **{name: getattr(FLAGS, name) for name in ("strict", "verify_images")
                                               if getattr(FLAGS, name) is not None})
    config = dataclasses.replace(config, data=data)
    dataset = read_dataset(split.format, split.annotations, split.images, split.classes, DataPolicy.of(data))
    geometry = InputGeometry(
        config.data, build_anchor_generator(config.model.anchors), build_matcher(config.model.matcher)
    )

    classes = dataset.num_classes
    print(f"dataset: {dataset.source} ({split.format}), {classes} class{'' if classes == 1 else 'es'}")
    print(f"{geometry.describe()} (from {FLAGS.config or 'the defaults of ExperimentConfig'})")
    print(format_statistics(dataset_statistics(dataset, geometry, progress=True)))
    print("bad-input policy: " + (("\n" + dataset.report.summary()) if dataset.report.summary()
                                  else "nothing skipped or changed"))
    if FLAGS.draw:
        paths = draw_dataset(dataset, geometry, FLAGS.draw, FLAGS.output_dir)
        print(f"drew {len(paths)} images to {FLAGS.output_dir}")
    if FLAGS.draw_augmented:
        paths = draw_augmented(dataset, config.data, FLAGS.draw_augmented, FLAGS.output_dir)
        print(f"drew {len(paths)} augmented training images to {FLAGS.output_dir}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
