"""COCO evaluation of a trained model: `bin/evaluate --model_dir=DIR` (or `--model=FILE.keras`).

Prints the standard 12-number COCO table and per-class AP, and writes metrics.json and detections.json into
--output_dir (default: DIR/eval). The split defaults to the data.val of the config the model was trained with; any
format works (COCO, VOC, CSV, TFRecord): the ground truth is built from the records, except for COCO files, whose
own annotations (with their mask areas) are the truth.
"""

import dataclasses
import os

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Model directory written by bin/train.")
flags.DEFINE_string("model", None, "A saved .keras model file (instead of --model_dir).")
flags.DEFINE_string("annotations", None, "Annotations of the split (default: the model's data.val); what they are "
                    "depends on --format (see keras_retinanet.config.SplitConfig).")
flags.DEFINE_string("images", None, "Image folder of the split (default: the model's data.val).")
flags.DEFINE_enum("format", None, ["coco", "voc", "csv", "tfrecord"],
                  "Format of --annotations (default: the model's data.val.format, or coco with --annotations).")
flags.DEFINE_string("classes", None, "Class file of the split (default: the model's data.val.classes).")
flags.DEFINE_bool("strict", None, "Turn every skip of the bad-input policy into an error (default: as trained).")
flags.DEFINE_string("output_dir", None, "Where metrics.json and detections.json go (default: MODEL_DIR/eval).")
flags.DEFINE_integer("batch_size", 8, "Images per batch.")


def main(argv):
    del argv
    if (FLAGS.model_dir is None) == (FLAGS.model is None):
        raise app.UsageError("give exactly one of --model_dir and --model")
    output_dir = FLAGS.output_dir or (os.path.join(FLAGS.model_dir, "eval") if FLAGS.model_dir else None)
    if output_dir is None:
        raise app.UsageError("--output_dir is required with --model")

    from keras_retinanet.config import SplitConfig
    from keras_retinanet.data.splits import official_ground_truth, read_split
    from keras_retinanet.evaluation import evaluate_model, write_evaluation
    from keras_retinanet.inference import load_trained_model, model_data_config

    model = load_trained_model(FLAGS.model_dir or FLAGS.model)
    data_config = model_data_config(model)
    if FLAGS.annotations:
        split = SplitConfig(FLAGS.annotations, FLAGS.images or "", FLAGS.format or "coco", FLAGS.classes or "")
    else:
        split = data_config.val
        split = SplitConfig(split.annotations, FLAGS.images or split.images, FLAGS.format or split.format,
                            split.classes if FLAGS.classes is None else FLAGS.classes)
    if FLAGS.strict is not None:
        data_config = dataclasses.replace(data_config, strict=FLAGS.strict)
    dataset = read_split(split, data_config)
    evaluation, results = evaluate_model(
        model, dataset, data_config, FLAGS.batch_size, ground_truth=official_ground_truth(split)
    )
    print(evaluation.summary)
    print()
    print(evaluation.format_per_class_table())
    metrics_path, detections_path = write_evaluation(evaluation, results, output_dir)
    print(f"\nwrote {metrics_path} and {detections_path}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
