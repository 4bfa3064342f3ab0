"""Fetches published pretrained weights, checks them and converts them to our formats:
`bin/fetch_weights NAME [--cache_dir=DIR] [--source_dir=DIR] [--base_url=URL]`, or `bin/fetch_weights --list`.

Prints the path of the converted file and how to use it. NAME is one of (`--list` says more):
  retinanet_resnet50_fpn_coco, retinanet_resnet50_fpn_v2_coco   torchvision's COCO RetinaNets -> NAME.keras, a
      detector for bin/predict, bin/evaluate and bin/export (--model=PATH), or to fine-tune from
      (--set=model.init_from=PATH)
  torchvision_resnet50, torchvision_resnet50_v2, torchvision_resnet101   torchvision's ImageNet ResNets ->
      NAME.weights.h5 of our ResNetBackbone (model.backbone.weights=PATH, with the settings printed)
  keras_resnet50, keras_resnet101, keras_resnet152   keras.applications' ImageNet ResNets -> NAME.weights.h5

The published file is downloaded into --cache_dir (default $KERAS_RETINANET_CACHE, else ~/.cache/keras_retinanet)
and checked against its pinned SHA-256 (keras.applications publishes only an MD5: that one) and size; an
interrupted download resumes where it stopped when run again (from FILE.partial in the cache), a file with another
digest is deleted and named with both digests. The converted file is written once (renamed into place when whole)
and reused after. Without internet access, --source_dir=DIR takes the published file (its published name, e.g.
resnet50-0676ba61.pth) from DIR instead, checked the same way; --base_url=URL downloads that name from a mirror.
Reading torchvision's .pth files needs no torch.
"""

import shlex

import yaml
from absl import app, flags

from keras_retinanet.cli import run_program

FLAGS = flags.FLAGS
flags.DEFINE_string("cache_dir", None, "Where downloads and converted files go (default: $KERAS_RETINANET_CACHE, "
                                       "else ~/.cache/keras_retinanet).")
flags.DEFINE_string("source_dir", None, "A folder holding the published file under its published name, used instead "
                                        "of downloading it (offline).")
flags.DEFINE_string("base_url", None, "A mirror serving the published file names, used instead of the published "
                                      "URL's folder.")
flags.DEFINE_bool("list", False, "List the known weights and exit.")


def main(argv):
    from keras_retinanet import pretrained

    if FLAGS.list:
        print(catalog_table())
        return
    if len(argv) != 2:
        raise app.UsageError(f"give one NAME of: {', '.join(pretrained.KNOWN_NAMES)} (--list says more)")
    name = argv[1]
    path = pretrained.fetch_weights(name, FLAGS.cache_dir, FLAGS.source_dir, FLAGS.base_url)
    print(path)
    print(how_to_use(name, path))


def catalog_table():
    """One line a known name: what it is, and the file it is converted from and to."""
    from keras_retinanet.pretrained import catalog
    from keras_retinanet.pretrained.conversions import CONVERSIONS

    return "\n".join(f"{weights.name:<32}{weights.description}; {weights.file_name} -> "
                     f"{weights.name}{CONVERSIONS[weights.conversion].suffix}"
                     for weights in catalog.CATALOG.values())


def how_to_use(name, path):
    """One line: the settings that use the converted weights `name` at `path`, as command-line flags."""
    from keras_retinanet.pretrained import model_settings

    settings = model_settings(name, path)
    overrides = " ".join(shlex.quote(f"--set={key}={_yaml(value)}") for key, value in settings.items())
    if "model.init_from" in settings:
        return f"predict, evaluate or export with --model={shlex.quote(path)}, or fine-tune from it with {overrides}"
    return f"train from it with {overrides}"


def _yaml(value):
    """`value` as --set reads it back (YAML): true / false, and floats with a decimal point (1.0e-05, not 1e-05)."""
    return value if isinstance(value, str) else yaml.safe_dump(value).removesuffix("\n...\n")


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
