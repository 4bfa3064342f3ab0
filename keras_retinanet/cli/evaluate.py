"""COCO evaluation of a trained model: `bin/evaluate --model_dir=DIR` (or `--model=FILE.keras`, or an exported
model `--model=NAME.tflite|NAME.onnx|NAME.xml` (LiteRT, ONNX Runtime, OpenVINO), each image fitted into its input
as `litert_runner.fit_to_input` does).

Prints the standard 12-number COCO table and per-class AP, and writes metrics.json and detections.json into
--output_dir (default: DIR/eval), with the analysis beside them (--analysis): pr_curves.png (per class and overall
at IoU 0.5 and 0.75), error_breakdown.json/.png (the COCO error breakdown: C75, C50, Loc, Sim, Oth, BG, FN),
confusion_matrix.json/.png (at IoU 0.5), and gallery_false_positives.png / gallery_missed.png (the images with the
most of each, ground truth dashed, detections scoring >= --draw_threshold). The split defaults to the data.val of
the config the model was trained with; any format works (COCO, VOC, CSV, TFRecord): the ground truth is built from
the records, except for COCO files, whose own annotations (with their mask areas) are the truth.
"""

import dataclasses
import os

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Model directory written by bin/train.")
flags.DEFINE_string("model", None, "A saved .keras model file, or a .tflite, .onnx or OpenVINO .xml model written "
                    "by bin/export (instead of --model_dir).")
flags.DEFINE_string("annotations", None, "Annotations of the split (default: the model's data.val); what they are "
                    "depends on --format (see keras_retinanet.config.SplitConfig).")
flags.DEFINE_string("images", None, "Image folder of the split (default: the model's data.val).")
flags.DEFINE_enum("format", None, ["coco", "voc", "csv", "tfrecord"],
                  "Format of --annotations (default: the model's data.val.format, or coco with --annotations).")
flags.DEFINE_string("classes", None, "Class file of the split (default: the model's data.val.classes).")
flags.DEFINE_bool("strict", None, "Turn every skip of the bad-input policy into an error (default: as trained).")
flags.DEFINE_string("output_dir", None, "Where metrics.json and detections.json go (default: MODEL_DIR/eval).")
flags.DEFINE_integer("batch_size", 8, "Images per batch.")
flags.DEFINE_enum("evaluator", "pycocotools", ["pycocotools", "faster_coco_eval"],
                  "COCO evaluator: pycocotools (the reference) or faster-coco-eval (the same 12 numbers, faster).")
flags.DEFINE_bool("analysis", True, "Also write the curves, error breakdown, confusion matrix and galleries.")
flags.DEFINE_float("draw_threshold", 0.5, "Detections scoring at least this count in the confusion matrix and are "
                                          "drawn in the galleries.")


def main(argv):
    del argv
    if (FLAGS.model_dir is None) == (FLAGS.model is None):
        raise app.UsageError("give exactly one of --model_dir and --model")
    output_dir = FLAGS.output_dir or (os.path.join(FLAGS.model_dir, "eval") if FLAGS.model_dir else None)
    if output_dir is None:
        raise app.UsageError("--output_dir is required with --model")

    from keras_retinanet.data.coco import to_coco_ground_truth
    from keras_retinanet.data.splits import official_ground_truth, read_split
    from keras_retinanet.evaluation import evaluate_litert, evaluate_model
    from keras_retinanet.export.litert_runner import ExportedDetector

    model, data_config = _load_model()
    split = _split(data_config.val)
    if FLAGS.strict is not None:
        data_config = dataclasses.replace(data_config, strict=FLAGS.strict)
    dataset = read_split(split, data_config)
    ground_truth = official_ground_truth(split) or to_coco_ground_truth(dataset)
    if isinstance(model, ExportedDetector):
        evaluation, results = evaluate_litert(model, dataset, ground_truth=ground_truth, evaluator=FLAGS.evaluator,
                                              progress=True)
    else:
        evaluation, results = evaluate_model(model, dataset, data_config, FLAGS.batch_size,
                                             ground_truth=ground_truth, evaluator=FLAGS.evaluator, progress=True)
    _report(evaluation, results, ground_truth, dataset, output_dir)


def _load_model():
    """The model of --model_dir or --model (a .keras file, or an exported .tflite, .onnx or OpenVINO .xml one as an
    `ExportedDetector`) and the data config it was trained with."""
    from keras_retinanet.config import DataConfig, from_dict
    from keras_retinanet.export.litert_runner import DETECTORS, LiteRTModelError, open_detector
    from keras_retinanet.inference import ModelError, load_trained_model, model_data_config

    if FLAGS.model and FLAGS.model.lower().endswith(tuple(DETECTORS)):
        try:
            model = open_detector(FLAGS.model)
        except LiteRTModelError as error:  # litert_runner imports nothing of ours: its errors are no InputError
            raise ModelError(str(error)) from error
        return model, from_dict(DataConfig, model.info["data"], source=f"{FLAGS.model}'s description")
    model = load_trained_model(FLAGS.model_dir or FLAGS.model)
    return model, model_data_config(model)


def _split(trained_val):
    """The split to evaluate: --annotations, or the model's data.val (`trained_val`) with the split flags given."""
    from keras_retinanet.config import SplitConfig

    if FLAGS.annotations:
        return SplitConfig(FLAGS.annotations, FLAGS.images or "", FLAGS.format or "coco", FLAGS.classes or "")
    return SplitConfig(trained_val.annotations, FLAGS.images or trained_val.images, FLAGS.format or trained_val.format,
                       trained_val.classes if FLAGS.classes is None else FLAGS.classes)


def _report(evaluation, results, ground_truth, dataset, output_dir):
    """Prints the COCO table and per-class AP, and writes the metrics, detections and (--analysis) the analysis."""
    from keras_retinanet.evaluation import write_evaluation
    from keras_retinanet.evaluation.report import write_analysis

    print(evaluation.summary)
    print()
    print(evaluation.format_per_class_table())
    metrics_path, detections_path = write_evaluation(evaluation, results, output_dir)
    print(f"\nwrote {metrics_path} and {detections_path}")
    if FLAGS.analysis:
        written = write_analysis(output_dir, evaluation, ground_truth, results, dataset, FLAGS.evaluator,
                                 FLAGS.draw_threshold)
        print(f"wrote the analysis (detections scoring >= {FLAGS.draw_threshold:g} in the confusion matrix and "
              f"galleries): {', '.join(os.path.basename(path) for path in written)}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
