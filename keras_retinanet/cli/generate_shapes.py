"""Writes the synthetic shapes dataset (COCO format): `bin/generate_shapes --output_dir=DIR [--train_images=400 ...]`.

Images go to DIR/<split>/, annotations to DIR/annotations/instances_<split>.json (see
`keras_retinanet.datasets.generate_shapes_dataset`).
"""

import json
import os

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Directory to write the dataset to (created if missing).", required=True)
flags.DEFINE_integer("train_images", 400, "Images in the 'train' split (0: no train split).", lower_bound=0)
flags.DEFINE_integer("val_images", 50, "Images in the 'val' split (0: no val split).", lower_bound=0)
flags.DEFINE_integer("image_size", 256, "Height and width of the square images, in pixels.")
flags.DEFINE_integer("min_objects", 2, "Fewest shapes an image tries to hold.")
flags.DEFINE_integer("max_objects", 8, "Most shapes an image holds.")
flags.DEFINE_integer("min_size", 16, "Smallest shape width or height, in pixels.")
flags.DEFINE_integer("max_size", 64, "Largest shape width or height, in pixels.")
flags.DEFINE_integer("seed", 0, "Random seed; each split derives its own from it and its name.")
flags.DEFINE_bool("clutter", True, "Draw unlabelled lines, dots and arcs as distractors.")
flags.DEFINE_float("noise_std", 8.0, "Standard deviation of the per-pixel Gaussian noise (0-255 scale).")
flags.DEFINE_list("classes", "circle,square,triangle,cross", "The shape classes, from circle, square, triangle, "
                  "cross, star and hexagon (ids 1.. in this order).")
flags.DEFINE_integer("colours", None, "Make the classes colour and shape: each of the first N named colours (1-19: "
                     "red, green, blue, yellow, cyan, magenta, white, orange, ...) with each of --classes, named "
                     "'red circle' and so on; an object has its class's colour. Default: colours drawn at random, "
                     "the classes being the shapes.")
flags.DEFINE_bool("imbalance", False, "The paper-study preset: 256 px images with 1-3 shapes of 12-32 px, so that "
                                      "positive anchors are rare (sets image_size, min/max_objects, min/max_size; "
                                      "giving those too is an error).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from keras_retinanet.datasets import IMBALANCE_PRESET, generate_shapes_dataset

    splits = {name: count for name, count in (("train", FLAGS.train_images), ("val", FLAGS.val_images)) if count}
    geometry = dict(image_size=(FLAGS.image_size, FLAGS.image_size), min_objects=FLAGS.min_objects,
                    max_objects=FLAGS.max_objects, min_size=FLAGS.min_size, max_size=FLAGS.max_size)
    if FLAGS.imbalance:
        given = [name for name in ("image_size", *geometry) if FLAGS[name].present]
        if given:
            raise app.UsageError(f"--imbalance sets {', '.join(sorted(set(given)))}: give one or the other")
        geometry = IMBALANCE_PRESET
    paths = generate_shapes_dataset(FLAGS.output_dir, splits, seed=FLAGS.seed, clutter=FLAGS.clutter,
                                    noise_std=FLAGS.noise_std, classes=FLAGS.classes, colours=FLAGS.colours,
                                    **geometry)
    for split, path in paths.items():
        with open(path) as file:
            dataset = json.load(file)
        print(f"{split}: {len(dataset['images'])} images, {len(dataset['annotations'])} boxes, "
              f"images in {os.path.join(FLAGS.output_dir, split)}, annotations in {path}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
