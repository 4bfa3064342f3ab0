"""The embedded demo: generate the shapes dataset, train, evaluate on the held-out split, draw predictions.

`make demo` runs this with configs/demo.yaml. Every step resumes where it can: the dataset is generated once,
and training continues from its last backup.
"""

import dataclasses
import os
import time

from absl import flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "configs/demo.yaml", "Experiment YAML file.")
flags.DEFINE_string("work_dir", "runs/demo", "Where the dataset (data/), the model (model/), the evaluation (eval/) "
                                             "and the picture (predictions.png) go.")
flags.DEFINE_multi_string("set", [], "Override a config value: --set=train.iterations=100 (repeatable).")
flags.DEFINE_integer("train_images", 400, "Images in the generated training split.")
flags.DEFINE_integer("val_images", 50, "Images in the generated held-out split.")
flags.DEFINE_integer("min_object_size", 16, "Smallest generated object, in pixels.")
flags.DEFINE_integer("max_object_size", 48, "Largest generated object, in pixels.")
flags.DEFINE_float("draw_threshold", 0.5, "Only detections scoring at least this are drawn in predictions.png.")


def main(argv):
    del argv
    start = time.monotonic()
    from keras_retinanet.data import read_coco
    from keras_retinanet.evaluation import evaluate_model, write_evaluation
    from keras_retinanet.training import train

    data_dir = os.path.join(FLAGS.work_dir, "data")
    config, annotations = _config_and_dataset(data_dir)
    model_dir = os.path.join(FLAGS.work_dir, "model")
    model = train(config, model_dir, verbose=2)
    train_minutes = (time.monotonic() - start) / 60

    val_set = read_coco(annotations["val"], os.path.join(data_dir, "val"))
    evaluation, results = evaluate_model(
        model, val_set, config.data, config.train.batch_size, ground_truth=annotations["val"]
    )
    write_evaluation(evaluation, results, os.path.join(FLAGS.work_dir, "eval"))
    print("\nCOCO evaluation on the held-out split:")
    print(evaluation.summary)
    print()
    print(evaluation.format_per_class_table())

    picture_path = _draw_predictions(model, val_set, config.data)
    print(f"\nAP {evaluation.metrics['AP']:.3f} (AP50 {evaluation.metrics['AP50']:.3f}); training took "
          f"{train_minutes:.1f} min, all {(time.monotonic() - start) / 60:.1f} min; detections with score >= "
          f"{FLAGS.draw_threshold:g} drawn in {picture_path} (ground truth dashed)")


def _config_and_dataset(data_dir):
    """The experiment config of --config and --set, its splits the shapes dataset in `data_dir` (generated once),
    and {split: annotations file}."""
    from keras_retinanet.config import load_config
    from keras_retinanet.datasets import generate_shapes_dataset

    splits = {"train": FLAGS.train_images, "val": FLAGS.val_images}
    annotations = {split: os.path.join(data_dir, "annotations", f"instances_{split}.json") for split in splits}
    overrides = [
        f"data.{split}.{key}={value}"
        for split in splits
        for key, value in (("annotations", annotations[split]), ("images", os.path.join(data_dir, split)))
    ]
    config = load_config(FLAGS.config, overrides + FLAGS.set)
    if not all(os.path.exists(path) for path in annotations.values()):
        print(f"generating the shapes dataset in {data_dir}")
        size = (config.data.min_size, config.data.min_size)
        generate_shapes_dataset(data_dir, splits=splits, image_size=size, min_size=FLAGS.min_object_size,
                                max_size=FLAGS.max_object_size)
    return config, annotations


def _draw_predictions(model, val_set, data_config):
    """Draws the first 6 held-out images' detections (score >= --draw_threshold) and ground truth (dashed) into
    WORK_DIR/predictions.png; returns its path."""
    from keras_retinanet.data.pipeline import load_images
    from keras_retinanet.inference import detect
    from keras_retinanet.visualization import draw_batch_detections, image_grid

    shown = dataclasses.replace(val_set, records=val_set.records[:6])
    detections = detect(model, shown, data_config, len(shown.records))
    pictures = [
        draw_batch_detections(image, detections, index, val_set.class_names, score_threshold=FLAGS.draw_threshold,
                              ground_truth_boxes=record.boxes)
        for index, (record, image) in enumerate(zip(shown.records, load_images(shown)))
    ]
    picture_path = os.path.join(FLAGS.work_dir, "predictions.png")
    image_grid(pictures, columns=3).save(picture_path)
    return picture_path


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
