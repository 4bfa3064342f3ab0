"""Reproduces the paper's ablations: `bin/study [--study=configs/study/paper.yaml] [--quick] [--work_dir=DIR]`.

Generates the study's datasets, trains every variant of the study file with the same seed, schedule and budget
on its dataset (a variant that starts from another's model after that one), evaluates each with COCO AP (at other
sizes and score thresholds, and timing inference, where a table asks), then writes the report (the paper's numbers
beside ours, a verdict on each of the paper's claims, each dataset's imbalance, the gradient norms where training
logged them) and its figures. The study file is checked whole
first (every variant's config with its overrides, the variants' names), so that a mistake in it stops the command
before anything trains. Rerunning the command resumes: the finished variants are read back, a half-trained one
continues from its backup. --quick runs the first row of each table on smaller images (the study file's `quick`
section), for a check in minutes.
"""

import os
import platform
import shlex
import sys
import time

from absl import flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("study", "configs/study/paper.yaml", "Study YAML file (see configs/study/).")
flags.DEFINE_bool("quick", False, "The first row of each table, smaller images and fewer iterations.")
flags.DEFINE_string("work_dir", None, "Where the dataset, the variants' models and results go (default "
                                      "runs/study, or runs/study_quick with --quick).")
flags.DEFINE_string("report", None, "The markdown report to write (default WORK_DIR/report.md); its figures go to "
                                    "figures/<report name>/ beside it.")
flags.DEFINE_string("discussion", None, "Markdown notes on the results, in '## <table id>' sections ('## summary' "
                                        "above the tables), put under each table of the report.")


def main(argv):
    del argv
    start = time.monotonic()
    import keras
    import tensorflow as tf

    from keras_retinanet.benchmark.hardware import describe_machine, machine_text
    from keras_retinanet.study import load_study
    from keras_retinanet.study.report import read_discussion, write_report
    from keras_retinanet.study.runner import run_study

    work_dir = FLAGS.work_dir or ("runs/study_quick" if FLAGS.quick else "runs/study")
    report = FLAGS.report or os.path.join(work_dir, "report.md")
    study = load_study(FLAGS.study, quick=FLAGS.quick)
    discussion = read_discussion(FLAGS.discussion, study) if FLAGS.discussion else None  # before hours of training
    results = run_study(study, work_dir)
    training_minutes = sum(result.get("train_seconds", 0.0) for result in results.variants.values()) / 60
    command = " ".join(["bin/study", *map(shlex.quote, sys.argv[1:])])
    header = [
        f"# The paper reproduced{' (quick form)' if FLAGS.quick else ''}: {os.path.basename(FLAGS.study)}",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d')}, {machine_text(describe_machine())}; Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}. "
        f"{len(results.variants)} variants, {training_minutes:.1f} min of training in all; this run took "
        f"{(time.monotonic() - start) / 60:.1f} min (finished variants are read back, not rerun). "
        "APs are COCO AP (%) on the held-out split.",
    ]
    for path in write_report(report, results, study, header, discussion):
        print(f"wrote {path}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
