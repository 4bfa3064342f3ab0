"""Speed and memory of our detector beside torchvision's and KerasHub's RetinaNet, and beside the hardware's floor.

Every figure is the median of --repeats timed runs after a warm-up run, each path measured in a fresh process, all
in one run so that the ratios hold on a shared machine. The floor is the network's FLOPs (from TensorFlow's graph
profiler; a training step counts 3 forwards) over the matmul peak this run measures in each dtype. Peers are timed
when installed (`pip install -e ".[torch]"` for torchvision, `".[keras_hub]"` for KerasHub) on the same random
images and boxes, ResNet-50, the same image size. The output is a Markdown table (the README's Speed section);
--json also writes it as data, --render prints the table of such a file again.

The litert path exports our detector to LiteRT (float32, float16, int8) and times LiteRT's interpreter on it. The
input pipeline is timed on --data_annotations (any format bin/train reads), or
on generated JPEG photos. The onednn path lists the oneDNN kernels that ran our forward and their share of its
time: whether the convolutions used AMX where the CPU has it, and which passes over memory (reorders, batch norms)
were not fused into them. The dataset_scale path, timed only when named (--paths=dataset_scale), generates a
COCO-sized annotation file (--dataset_images, --dataset_boxes, --dataset_classes; tiny JPEG files, hard-linked, for
the images) and times reading it, its statistics (bin/inspect_dataset's) and anchor fitting (bin/fit_anchors), with
the peak memory. The fit_budget path, run only when named (--paths=fit_budget --fit_config=experiment.yaml), trains
our detector as --fit_config (with the overrides of --fit_set) says and torchvision's RetinaNet (a ResNet-FPN of
depth --fit_peer_depth from scratch, the same image size, flip, batch size, SGD with warm-up) for --fit_minutes each
on its data, and scores both on its data.val with the same COCO code: AP, AP50, AP per class, iterations and
images/s side by side. The runtimes path, run only when named (--paths=runtimes), exports the detector of
--runtimes_config (e.g. configs/mobile_320.yaml; random weights) to each of --runtimes (LiteRT float32 and int8,
ONNX Runtime, OpenVINO float32 and int8; those whose package is absent are reported so) and times each on one uint8
image of --image_size with --litert_threads threads, beside TensorFlow's SavedModel: which runtime is the fastest
here at each precision. Exported files named by --exported_models (a trained model, a ResNet-50 int8 at 640) are
timed with it, each by its runtime (SavedModel folders last, by TensorFlow); the others run the stand-alone
litert_runner.py, without TensorFlow.
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from keras_retinanet.benchmark import suite  # noqa: E402
from keras_retinanet.benchmark.peers import PEERS  # noqa: E402
from keras_retinanet.benchmark.report import markdown  # noqa: E402
from keras_retinanet.benchmark.dataset_scale import COCO_BOXES, COCO_CLASSES, COCO_IMAGES  # noqa: E402
from keras_retinanet.benchmark.suite import (  # noqa: E402
    DATA_FORMATS, DTYPES, EXTRA_PATHS, PATHS, QUANTIZATIONS, RUNTIMES)
from keras_retinanet.cli import run_program  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 640, "Square input size in pixels.")
flags.DEFINE_integer("batch_size", 1, "Images per batch for forward, predict and serving.")
flags.DEFINE_integer("train_batch_size", 2, "Images per batch for training steps.")
flags.DEFINE_integer("num_classes", 80, "Number of classes.")
flags.DEFINE_integer("depth", 50, "ResNet depth (the peers are timed with 50 only).")
flags.DEFINE_integer("repeats", 5, "Timed runs per figure (the median is reported).")
flags.DEFINE_list("paths", list(PATHS), f"What to time, of {', '.join(PATHS)}; also, only when named, "
                                        f"{', '.join(EXTRA_PATHS)}.")
flags.DEFINE_list("dtypes", list(DTYPES), "Compute dtypes: float32, bfloat16 (mixed_bfloat16 for us).")
flags.DEFINE_list("peers", list(PEERS), "Peers to time where installed: torchvision, keras_hub.")
flags.DEFINE_string("data_annotations", "", "Annotations of real photos for the pipeline paths (default: generated).")
flags.DEFINE_string("data_images", "", "Image folder of --data_annotations.")
flags.DEFINE_enum("data_format", "csv", list(DATA_FORMATS), "Format of --data_annotations.")
flags.DEFINE_integer("pipeline_batches", 20, "Batches of 2 timed through the input pipeline.")
flags.DEFINE_integer("fit_steps", 4, "fit steps timed with the pipeline and with the same batches cached.")
flags.DEFINE_list("litert_quantizations", list(QUANTIZATIONS), "LiteRT models the litert path exports and times.")
flags.DEFINE_integer("litert_threads", None, "Interpreter threads (default: the cores this process may use).")
flags.DEFINE_string("runtimes_config", "", "Experiment file whose detector the runtimes path exports to every "
                    "runtime (random weights; default: a ResNet of --depth), e.g. configs/mobile_320.yaml.")
flags.DEFINE_list("runtimes", list(RUNTIMES), f"What the runtimes path exports and times, of {', '.join(RUNTIMES)}.")
flags.DEFINE_list("exported_models", [], "Exported .tflite, .onnx or OpenVINO .xml files, or SavedModel folders "
                  "(bin/export's), the runtimes path times too, each on a random image of its input size (a "
                  "SavedModel's: --image_size), e.g. a trained model.")
flags.DEFINE_integer("dataset_images", COCO_IMAGES, "Images of the dataset_scale path's generated file.")
flags.DEFINE_integer("dataset_boxes", COCO_BOXES, "Boxes of the dataset_scale path's generated file.")
flags.DEFINE_integer("dataset_classes", COCO_CLASSES, "Classes of the dataset_scale path's generated file.")
flags.DEFINE_string("fit_config", "", "Experiment file of the fit_budget path: our detector, and the data both train "
                                    "on (data.train) and are scored on (data.val).")
flags.DEFINE_multi_string("fit_set", [], "Overrides of --fit_config (dotted.key=value, as bin/train's --set), for "
                          "both detectors: e.g. train.iterations and train.lr_steps that fill the budget.")
flags.DEFINE_float("fit_minutes", 10.0, "Training minutes of each detector in the fit_budget path.")
flags.DEFINE_integer("fit_peer_depth", 18, "ResNet depth of torchvision's RetinaNet in the fit_budget path.")
flags.DEFINE_string("json", "", "Also write the report to this JSON file.")
flags.DEFINE_string("render", "", "Print the table of a report written by --json, and time nothing.")


def main(argv):
    del argv
    if FLAGS.render:
        print(markdown(suite.read_report(FLAGS.render)))
        return
    fields = dataclasses.fields(suite.BenchmarkOptions)
    options = suite.BenchmarkOptions(**{field.name: FLAGS[field.name].value for field in fields})
    report = suite.run_benchmark(options, command=" ".join(["bin/benchmark", *sys.argv[1:]]))
    if FLAGS.json:
        suite.write_report(report, FLAGS.json)
    print(markdown(report))


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
