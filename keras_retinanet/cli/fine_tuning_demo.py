"""The fine-tuning demo: a detector trained on one generated dataset, fine-tuned on another with other classes.

`make demo-fine-tune` runs this with configs/fine_tuning_demo.yaml (about 3 minutes on 2 CPU cores). It trains the
source on circles, squares and triangles, then trains on squares, stars and hexagons (images the source never saw)
from that source (model.init_from) with the settings that matter varied, and from scratch, and prints each
variant's AP on the held-out split: "square" is a class of both, so its rows of the class subnet are the source's;
star and hexagon start from the prior. The table also goes to WORK_DIR/seed<SEED>/report.md.
"""

import os

from absl import flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "configs/fine_tuning_demo.yaml", "Experiment YAML file of the fine-tuning.")
flags.DEFINE_string("work_dir", "runs/fine_tuning_demo", "Where the datasets, the models and report.md go.")
flags.DEFINE_integer("seed", 0, "data.seed of every run (initial weights and data order).")
flags.DEFINE_integer("source_iterations", 200, "Iterations of the source's training.")

SOURCE_CLASSES = ("circle", "square", "triangle")
TARGET_CLASSES = ("square", "star", "hexagon")
GEOMETRY = dict(image_size=(64, 64), min_size=12, max_size=28, min_objects=1, max_objects=4)
# (name, from the source, overrides): what a user fine-tuning chooses.
VARIANTS = (
    ("from scratch", False, []),
    ("fine-tuned", True, []),
    ("fine-tuned, learning rate 0.003", True, ["train.learning_rate=0.003"]),
    ("fine-tuned, backbone frozen", True, ["train.freeze=[backbone]"]),
    ("fine-tuned, backbone and pyramid frozen", True, ["train.freeze=[backbone, pyramid]"]),
    ("fine-tuned, 30 iterations", True, ["train.iterations=30", "train.lr_steps=[24]", "train.warmup_iterations=8"]),
    ("from scratch, 300 iterations", False, ["train.iterations=300", "train.lr_steps=[240]"]),
)


def generate(work_dir, seed=0):
    """The two datasets (generated once): {"circles": folder, "stars": folder}, each with train and val splits."""
    from keras_retinanet.datasets import generate_shapes_dataset

    folders = {}
    for name, classes, data_seed in (("circles", SOURCE_CLASSES, seed), ("stars", TARGET_CLASSES, seed + 1)):
        folder = folders[name] = os.path.join(work_dir, name)
        if not os.path.exists(os.path.join(folder, "annotations", "instances_val.json")):
            generate_shapes_dataset(folder, splits={"train": 200, "val": 40}, classes=classes, seed=data_seed,
                                    **GEOMETRY)
    return folders


def data_overrides(folder):
    """--set overrides that make `folder`'s splits the training and held-out data."""
    return [f"data.{split}.{key}={value}" for split in ("train", "val")
            for key, value in (("annotations", f"{folder}/annotations/instances_{split}.json"),
                               ("images", f"{folder}/{split}"))]


def held_out_ap(model, folder, data_config):
    """Per-class AP and AP of `model` on `folder`'s val split."""
    from keras_retinanet.data import read_coco
    from keras_retinanet.evaluation import evaluate_model

    val = read_coco(os.path.join(folder, "annotations", "instances_val.json"), os.path.join(folder, "val"))
    evaluation, _ = evaluate_model(model, val, data_config, 8)
    return {**evaluation.per_class_ap, "all": evaluation.metrics["AP"]}


def main(argv):
    del argv
    from keras_retinanet.config import given_settings, load_config
    from keras_retinanet.training import train
    from keras_retinanet.training.fine_tuning import report_lines, starting_point

    folders = generate(FLAGS.work_dir)
    seed = [f"data.seed={FLAGS.seed}"]
    source_dir = os.path.join(FLAGS.work_dir, f"seed{FLAGS.seed}", "source")
    source = [*data_overrides(folders["circles"]), *seed, f"train.iterations={FLAGS.source_iterations}",
              f"train.lr_steps=[{FLAGS.source_iterations * 4 // 5}]"]
    train(load_config(FLAGS.config, source), source_dir, verbose=0, given=given_settings(FLAGS.config, source))

    rows = []
    fine_tuning = [*data_overrides(folders["stars"]), *seed, f"model.init_from={source_dir}"]
    config = load_config(FLAGS.config, fine_tuning)
    model, report = starting_point(config, given_settings(FLAGS.config, fine_tuning), TARGET_CLASSES, (1, 2, 3))
    rows.append(("source, before any step", 0, held_out_ap(model, folders["stars"], config.data)))
    for index, (name, fine_tuned, overrides) in enumerate(VARIANTS):
        overrides = [*data_overrides(folders["stars"]), *seed, *overrides]
        if fine_tuned:
            overrides.append(f"model.init_from={source_dir}")
        config = load_config(FLAGS.config, overrides)
        model = train(config, os.path.join(FLAGS.work_dir, f"seed{FLAGS.seed}", f"variant{index}"), verbose=0,
                      given=given_settings(FLAGS.config, overrides))
        rows.append((name, config.train.iterations, held_out_ap(model, folders["stars"], config.data)))

    lines = [f"Fine-tuning from a detector of {', '.join(SOURCE_CLASSES)} ({FLAGS.source_iterations} iterations) "
             f"to {', '.join(TARGET_CLASSES)}, data.seed {FLAGS.seed}; AP on the 40 held-out images:", "",
             "| variant | iterations | AP square (shared) | AP star | AP hexagon | AP |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {iterations} | " + " | ".join(f"{ap[key]:.3f}" for key in (*TARGET_CLASSES, "all")) + " |"
              for name, iterations, ap in rows]
    lines += ["", *report_lines(report)]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(FLAGS.work_dir, f"seed{FLAGS.seed}", "report.md"), "w") as file:
        file.write(text)
    print(text)


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
