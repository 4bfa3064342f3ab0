"""Dataset conversion: `bin/convert_dataset --format=voc --annotations=... --images=... --to=tfrecord --output=PREFIX`.

Reads a dataset in any supported format (coco, voc, csv, tfrecord) with the bad-input policy (see
`keras_retinanet.data.policy`; `--strict` makes every skip an error) and writes it as
  tfrecord: `PREFIX-0000i-of-0000N.tfrecord` shards in the TF Object Detection API layout and
      `PREFIX.label_map.pbtxt`;
  coco: `OUTPUT/annotations.json`, its file names relative to --images; a TFRecord dataset's embedded images are
      written to `OUTPUT/images/` (then the image folder for `bin/evaluate` and pycocotools).
Prints what the policy skipped or changed, a progress bar with images/s while images are written, and what was
written.
"""

import json
import os

from absl import flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", None, ["coco", "voc", "csv", "tfrecord"], "Format of the dataset to read.", required=True)
flags.DEFINE_string("annotations", None, "The annotations: COCO JSON, VOC XML folder or image-set list, CSV file, or "
                    "TFRecord file / glob of shards.", required=True)
flags.DEFINE_string("images", "", "The image folder (not for tfrecord).")
flags.DEFINE_string("classes", "", "Class file (`name,id` lines; VOC: one name per line; TFRecord: label_map.pbtxt); "
                    "default: the classes found in the data.")
flags.DEFINE_enum("to", None, ["tfrecord", "coco"], "Format to write.", required=True)
flags.DEFINE_string("output", None, "tfrecord: the shards' path prefix; coco: the output folder.", required=True)
flags.DEFINE_integer("num_shards", 1, "Number of TFRecord shards.", lower_bound=1)
flags.DEFINE_bool("strict", False, "Every image or box the policy would skip or change is an error instead.")


def convert_to_coco(dataset, output_dir, images_dir=None, progress=None):
    """Writes `output_dir/annotations.json` for `dataset`, file names relative to `images_dir`; the images of a
    dataset that embeds them (TFRecord) go to `output_dir/images/` first. Returns (JSON path, image folder)."""
    from keras_retinanet.data import to_coco_ground_truth
    from keras_retinanet.data.tfrecord import write_images

    if dataset.image_source is not None:
        images_dir = os.path.join(output_dir, "images")
        dataset = write_images(dataset, images_dir, progress)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "annotations.json")
    with open(path, "w", encoding="utf-8") as file:
        json.dump(to_coco_ground_truth(dataset, images_dir=images_dir), file)
    return path, images_dir


def main(argv):
    del argv
    from keras_retinanet.config import DataConfig, SplitConfig
    from keras_retinanet.data import DataError, write_tfrecords
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.progress import image_progress

    split = SplitConfig(FLAGS.annotations, FLAGS.images, FLAGS.format, FLAGS.classes)
    dataset = read_split(split, DataConfig(strict=FLAGS.strict))
    progress = image_progress(len(dataset.records))
    try:
        if FLAGS.to == "tfrecord":
            paths = write_tfrecords(dataset, FLAGS.output, FLAGS.num_shards, progress)
            print(f"wrote {len(dataset.records)} images to {len(paths)} shard(s) {FLAGS.output}-*-of-"
                  f"{len(paths):05d}.tfrecord and the label map {FLAGS.output}.label_map.pbtxt")
        else:
            path, images_dir = convert_to_coco(dataset, FLAGS.output, FLAGS.images or None, progress)
            annotations = sum(len(record.boxes) + len(record.ignore_boxes) for record in dataset.records)
            print(f"wrote {path} ({len(dataset.records)} images, {annotations} annotations); images in {images_dir}")
    except OSError as error:  # an --output in a file's place, no permission, a full disk
        raise DataError(f"--output={FLAGS.output}: cannot write {error.filename or 'the output'} "
                          f"({error.strerror or error})") from None


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
