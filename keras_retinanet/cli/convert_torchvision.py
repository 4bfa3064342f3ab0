"""torchvision weights -> Keras: `bin/convert_torchvision --weights=FILE.pth --variant=v1|v2 --output=MODEL.keras`.

v1 / v2: a torchvision RetinaNet-ResNet50-FPN state dict (`retinanet_resnet50_fpn` / `retinanet_resnet50_fpn_v2`,
e.g. the COCO weights `retinanet_resnet50_fpn_coco-eeacb38b.pth`, or a checkpoint of torchvision's reference scripts
holding it under "model") becomes a `.keras` detector with torchvision's preprocessing, post-processing and COCO
label map, ready for bin/predict, bin/evaluate and bin/export.

resnet: a torchvision ImageNet ResNet-18..152 state dict (`resnet50-0676ba61.pth`, ...) becomes the weights of our
`ResNetBackbone` (`--output=NAME.weights.h5`), to fine-tune from: see the README.

.pth files are read without torch (`keras_retinanet.convert.pth`, whose unpickling may call nothing but the few
globals a state dict needs). The file must be the zip archive torch.save writes (PyTorch 1.6 and later), within the
bounds of a model file (`keras_retinanet.inference.open_bounded_zip`); any other file, or a state dict that is not
what --variant needs, is one line naming the file.
"""

from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", None, "The torchvision .pth file (a state dict).", required=True)
flags.DEFINE_enum("variant", None, ["v1", "v2", "resnet"],
                  "v1: retinanet_resnet50_fpn; v2: retinanet_resnet50_fpn_v2; resnet: an ImageNet ResNet backbone.",
                  required=True)
flags.DEFINE_string("output", None, "The .keras model to write (resnet: a .weights.h5 file).", required=True)
flags.DEFINE_list("class_names", None, "v1 / v2 fine-tuned on other data than COCO: the class names, in torchvision's "
                  "label order (default: COCO's 91 names).")


def main(argv):
    del argv
    suffix = ".weights.h5" if FLAGS.variant == "resnet" else ".keras"
    if not FLAGS.output.endswith(suffix):
        raise app.UsageError(f"--variant={FLAGS.variant} writes a {suffix} file: --output must end with {suffix}")

    from keras_retinanet.convert.pth import read_state_dict
    from keras_retinanet.inference import ModelError, one_line

    state = read_state_dict(FLAGS.weights)
    try:
        print(convert_and_save(state))
    except ValueError as error:  # the converters name the key, shape or variant of the state dict that does not fit
        raise ModelError(f"{FLAGS.weights}: {one_line(error)}") from error


def convert_and_save(state):
    """Converts `state` per the flags and writes --output; returns what was written, to print."""
    from keras_retinanet.backbones import ResNetBackbone
    from keras_retinanet.convert.torchvision import (
        TORCHVISION_BN_EPSILON,
        convert_torchvision_retinanet,
        load_torchvision_resnet_weights,
        torchvision_resnet_depth,
    )

    if FLAGS.variant == "resnet":
        depth = torchvision_resnet_depth(state)
        backbone = ResNetBackbone(depth, stride_in_1x1=False, bn_epsilon=TORCHVISION_BN_EPSILON, preprocessing="torch")
        load_torchvision_resnet_weights(backbone, state)
        backbone.save_weights(FLAGS.output)
        return (f"wrote the weights of a torchvision ResNet-{depth} to {FLAGS.output}; train with "
                f"model.backbone.depth={depth}, weights={FLAGS.output}, stride_in_1x1=false, preprocessing=torch, "
                f"bn_epsilon={TORCHVISION_BN_EPSILON}")
    model = convert_torchvision_retinanet(state, FLAGS.variant, FLAGS.class_names)
    model.save(FLAGS.output)
    return f"wrote the torchvision RetinaNet {FLAGS.variant} ({model.num_classes} classes) to {FLAGS.output}"


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
