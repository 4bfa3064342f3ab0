"""Fetches the raccoon dataset at a pinned commit, checking every file's SHA-256:
`bin/fetch_raccoon [--output_dir=data/raccoon] [--source_dir=LOCAL_COPY]` (also
`python -m keras_retinanet.cli.fetch_raccoon`).

github.com/datitran/raccoon_dataset (MIT licence): 200 photos, VOC XML annotations, CSV labels with the published
160 / 40 split; configs/raccoon.yaml reads it from data/raccoon. Files already in place with the right checksum are
kept (a rerun fetches only what is missing); a file with another checksum is an error naming it, and is not
written. Without internet access, --source_dir copies from a local copy instead, checked the same way.
"""

import sys

from absl import flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "data/raccoon", "Where the dataset goes (configs/raccoon.yaml reads data/raccoon).")
flags.DEFINE_string("source_dir", None, "A local copy to take the files from instead of downloading them.")


def main(argv):
    del argv
    from keras_retinanet.datasets.raccoon import COMMIT, DatasetFetchError, fetch_raccoon

    try:
        written, kept = fetch_raccoon(FLAGS.output_dir, FLAGS.source_dir)
    except DatasetFetchError as error:
        sys.exit(f"error: {error}")
    print(f"{FLAGS.output_dir}: the raccoon dataset at commit {COMMIT[:12]}: {written + kept} files checked "
          f"(SHA-256), {written} written, {kept} already in place")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
