"""SavedModel for TF Serving: `bin/export --model_dir=DIR --output=PATH` (or `--model=FILE.keras`).

The SavedModel takes raw images (signature `serving_default`: a uint8 batch `images`; `image_bytes`: encoded
`encoded_images`), resizes them as the model was trained, and returns the TF Object Detection API's outputs
(`detection_boxes`, `detection_scores`, `detection_classes`, `num_detections`); see `keras_retinanet.export`.
The thresholds default to the model's own inference settings.
"""

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Model directory written by bin/train.")
flags.DEFINE_string("model", None, "A saved .keras model file (instead of --model_dir).")
flags.DEFINE_string("output", None, "The SavedModel directory to write (for TF Serving: MODEL_BASE/<version>).",
                    required=True)
flags.DEFINE_float("score_threshold", None, "Detections need a score above this (default: the model's).")
flags.DEFINE_float("iou_threshold", None, "Class-wise NMS IoU threshold (default: the model's).")
flags.DEFINE_integer("max_detections", None, "Detections per image (default: the model's).")
flags.DEFINE_integer("min_size", None, "Shorter side of the resized image (default: as trained).")
flags.DEFINE_integer("max_size", None, "Cap of the longer side of the resized image (default: as trained).")
flags.DEFINE_integer("size_divisor", None, "Images are padded to multiples of this (default: as trained).")
flags.DEFINE_integer("max_image_pixels", None, "The served model refuses larger images, before decoding them "
                                               "(default: the training data's limit, data.max_image_pixels).")


def main(argv):
    del argv
    if (FLAGS.model_dir is None) == (FLAGS.model is None):
        raise app.UsageError("give exactly one of --model_dir and --model")

    from keras_retinanet.export import export_saved_model
    from keras_retinanet.inference import load_trained_model

    model = load_trained_model(FLAGS.model_dir or FLAGS.model)
    export_saved_model(
        model,
        FLAGS.output,
        min_size=FLAGS.min_size,
        max_size=FLAGS.max_size,
        size_divisor=FLAGS.size_divisor,
        score_threshold=FLAGS.score_threshold,
        iou_threshold=FLAGS.iou_threshold,
        max_detections=FLAGS.max_detections,
        max_image_pixels=FLAGS.max_image_pixels,
    )
    print(f"wrote the SavedModel to {FLAGS.output}: signatures serving_default (images, uint8 [B, H, W, 3]) and "
          "image_bytes (encoded_images, string [B]); label map in assets/")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
