"""Detections on images: `bin/predict --model=DIR_OR_FILE --output_dir=OUT IMAGE_OR_FOLDER ...`.

Writes one picture with labelled boxes per image (OUT/<name>.png) and OUT/detections.json: COCO-style results
(`image_id`, `category_id`, `bbox` [x, y, w, h], `score`) plus `file_name`, in original image pixels (of the image
turned upright per its EXIF orientation, as viewers show it).
"""

import json
import os

from absl import app, flags

from keras_retinanet.cli import run_program

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model directory written by bin/train, or a .keras file.", required=True)
flags.DEFINE_string("output_dir", None, "Where the pictures and detections.json go.", required=True)
flags.DEFINE_float("draw_threshold", 0.5, "Only detections scoring at least this are drawn (all, down to the "
                                         "model's score threshold, are in the JSON).")
flags.DEFINE_integer(
    "batch_size", 1,
    "Images per batch. A batch holds images of one padded size only, so every image gets the detections it gets "
    "on its own.",
)


def image_paths(inputs):
    """Image files named in `inputs`, folders expanded (sorted), each once; an input that is neither is an error."""
    from keras_retinanet.data.policy import DataError

    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths.extend(
                os.path.join(item, name) for name in sorted(os.listdir(item)) if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise DataError(f"no image or folder at {item}")
    if not paths:
        raise DataError(f"no images found in {list(inputs)}")
    return list(dict.fromkeys(paths))  # a file named on its own and inside a named folder is done once


def main(argv):
    inputs = argv[1:]
    if not inputs:
        raise app.UsageError("name at least one image or folder")
    paths = image_paths(inputs)

    from keras_retinanet.data.pipeline import load_images
    from keras_retinanet.evaluation import detections_to_coco_results
    from keras_retinanet.inference import detect, load_trained_model, model_data_config
    from keras_retinanet.visualization import draw_batch_detections

    model = load_trained_model(FLAGS.model)
    data_config = model_data_config(model)
    class_names = model.metadata["class_names"]
    detections = detect(model, paths, data_config, FLAGS.batch_size, progress=True)

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    image_ids = list(range(1, len(paths) + 1))
    results = detections_to_coco_results(image_ids, detections, model.metadata["category_ids"])
    for result in results:
        result["file_name"] = paths[result["image_id"] - 1]
    for index, (path, image) in enumerate(zip(paths, load_images(paths))):
        picture = draw_batch_detections(image, detections, index, class_names, FLAGS.draw_threshold)
        count = int(detections["num_detections"][index])
        name = os.path.splitext(os.path.basename(path))[0]
        picture.save(os.path.join(FLAGS.output_dir, f"{name}.png"))
        drawn = int(sum(detections['scores'][index, :count] >= FLAGS.draw_threshold))
        print(f"{path}: {drawn} of {count} detections drawn (score >= {FLAGS.draw_threshold:g})")
    with open(os.path.join(FLAGS.output_dir, "detections.json"), "w", encoding="utf-8") as stream:
        json.dump(results, stream)
    print(f"wrote {len(paths)} pictures and detections.json to {FLAGS.output_dir}")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
