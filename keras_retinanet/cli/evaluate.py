"""COCO evaluation of a trained model: `bin/evaluate --model_dir=DIR` (or `--model=FILE.keras`).

Prints the standard 12-number COCO table and per-class AP, and writes metrics.json and detections.json into
--output_dir (default: DIR/eval). The split defaults to the data.val of the config the model was trained with.
"""

import os

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Model directory written by bin/train.")
flags.DEFINE_string("model", None, "A saved .keras model file (instead of --model_dir).")
flags.DEFINE_string("annotations", None, "COCO instances JSON of the split (default: the model's data.val).")
flags.DEFINE_string("images", None, "Image folder of the split (default: the model's data.val).")
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
    from keras_retinanet.evaluation import write_evaluation
    from keras_retinanet.training import evaluate_model, load_trained_model, model_data_config, read_split

    model = load_trained_model(FLAGS.model_dir or FLAGS.model)
    data_config = model_data_config(model)
    split = SplitConfig(
        annotations=FLAGS.annotations or data_config.val.annotations,
        images=FLAGS.images or data_config.val.images,
    )
    dataset = read_split(split)
    evaluation, results = evaluate_model(model, dataset, split.annotations, data_config, FLAGS.batch_size)
    print(evaluation.summary)
    print()
    print(evaluation.format_per_class_table())
    metrics_path, detections_path = write_evaluation(evaluation, results, output_dir)
    print(f"\nwrote {metrics_path} and {detections_path}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
