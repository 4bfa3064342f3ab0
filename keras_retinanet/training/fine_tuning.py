"""Fine-tuning from a trained detector (`model.init_from`): the source read, its architecture laid under the
config, its weights copied by place and its class rows by class name.

The source is a `.keras` detector (one `bin/convert_torchvision` wrote included), a model directory of `bin/train`,
a torchvision RetinaNet `.pth` (converted on the fly, without torch) or a name `bin/fetch_weights` knows (fetched
and converted on first use). Its stored config gives the architecture (`ARCHITECTURE`: a setting there that the
user wrote and that differs is an error naming both values) and the defaults of every other model setting and of
the input size; what the user wrote of those wins. The classes are the user's data's: a class whose name the source
also has keeps that class's rows of the class subnet's output layer (`same_name`), the others start from the prior.
`model.init_components` copies only some components (the others start as from scratch); then only the architecture
that their weights need must be the source's (`ARCHITECTURE_OF`).
"""

import dataclasses
import math
import os

from keras_retinanet.config import (
    FREEZABLE, ConfigError, ExperimentConfig, flattened, from_dict, nested, shown, to_dict,
)
from keras_retinanet.inference import ModelError, load_trained_model, one_line
from keras_retinanet.models import build_detector
from keras_retinanet.models.transfer import transfer_weights

# The settings that decide the source's weights' places and shapes, or what its weights expect of the input: a
# config may repeat them, not change them.
ARCHITECTURE = tuple(
    f"model.{key}" for key in (
        "backbone.type", "backbone.name", "backbone.depth", "backbone.stride_in_1x1", "backbone.normalization",
        "backbone.bn_epsilon", "backbone.preprocessing", "backbone.width_multiplier", "anchors.sizes",
        "anchors.scales", "anchors.aspect_ratios", "anchors.mode", "pyramid.filters", "pyramid.p6_input",
        "pyramid.separable", "heads.filters", "heads.num_convs", "heads.normalization", "heads.separable")
) + ("data.resize_rule",)
# The settings of `ARCHITECTURE` that each component's weights need (`model.init_components`): its own and those of
# the components before it, whose outputs it was trained on.
_BACKBONE = tuple(key for key in ARCHITECTURE if key.startswith(("model.backbone.", "data.")))
ARCHITECTURE_OF = {
    "backbone": _BACKBONE,
    "pyramid": (*_BACKBONE, "model.pyramid.filters", "model.pyramid.p6_input", "model.pyramid.separable"),
    "box_head": ARCHITECTURE,
    "class_head": ARCHITECTURE,
}
# Changes of `ARCHITECTURE` that the source's weights survive, as (key, the source's value, the config's): batch
# normalisation's four weights a layer are frozen batch normalisation's, then kept as they are.
ALLOWED_CHANGES = (("model.backbone.normalization", "batch_norm", "frozen_bn"),)
# The input size the source was trained at: its values unless the config gives others.
INPUT_SIZE = ("data.min_size", "data.max_size", "data.size_divisor")
# Class names of torchvision's COCO label space that are no class (index 0 and the unused ids).
PLACEHOLDER_CLASS_NAMES = ("__background__", "N/A")


@dataclasses.dataclass
class Source:
    """A detector to start from: `model` (a `RetinaNet`), its `class_names`, its `config` (`ExperimentConfig`) and
    `origin` (the file it was read from, for messages)."""

    model: object
    class_names: list
    config: ExperimentConfig
    origin: str


def read_source(init_from):
    """The `Source` `init_from` names (see the module docstring); a `ModelError` naming it if it cannot be read."""
    if os.path.isdir(init_from) or os.path.isfile(init_from):
        if init_from.endswith((".pth", ".pt")):
            model = _converted_torchvision(init_from)
        else:
            model = load_trained_model(init_from)
        origin = init_from
    else:
        from keras_retinanet import pretrained

        if not pretrained.is_known(init_from):
            raise ModelError(f"'model.init_from' = {shown(init_from)}: no such file or model directory, and not a "
                             f"name bin/fetch_weights knows ({', '.join(pretrained.KNOWN_NAMES)})")
        origin = pretrained.fetch_weights(init_from)
        if not origin.endswith(".keras"):
            raise ModelError(f"'model.init_from' = {init_from!r} is backbone weights, not a detector: give them as "
                             f"model.backbone.weights={origin}")
        model = load_trained_model(origin)
    stored = model.metadata.get("config")
    if stored is None:
        raise ModelError(f"{origin}: carries no experiment config (it was not written by bin/train or "
                         "bin/convert_torchvision), so its architecture is unknown")
    config = from_dict(ExperimentConfig, stored, source=f"{origin}'s stored config")
    return Source(model, list(model.metadata["class_names"]), config, origin)


def _converted_torchvision(path):
    from keras_retinanet.convert.pth import read_state_dict
    from keras_retinanet.convert.torchvision import COCO_CATEGORY_NAMES, convert_torchvision_retinanet

    state = read_state_dict(path)
    try:
        return convert_torchvision_retinanet(state)
    except ValueError as error:
        if "not COCO's 91" in str(error):
            raise ModelError(f"{path}: a torchvision RetinaNet of other classes than COCO's "
                             f"{len(COCO_CATEGORY_NAMES)}: convert it with bin/convert_torchvision --class_names=... "
                             "and start from the .keras file it writes") from None
        raise ModelError(f"{path}: {one_line(error)}") from error


def given_by_default(config):
    """The dotted keys of `config`'s settings that differ from the defaults: what was given, for a config built in
    Python (`keras_retinanet.config.given_settings` knows it exactly for files)."""
    defaults = flattened(to_dict(ExperimentConfig()))
    return frozenset(key for key, value in flattened(to_dict(config)).items() if value != defaults.get(key))


def resolved_config(config, source, given, where="the config"):
    """`config` with `source`'s architecture and settings under it: `ARCHITECTURE` and the other model settings and
    `INPUT_SIZE` from the source where `given` (dotted keys the user wrote) lacks them, the user's values where it
    has them; data, schedule, `model.init_from` and `model.init_components` the user's, `model.backbone.weights`
    none (the source's weights replace them). A `ConfigError` names the first setting of `ARCHITECTURE` that the
    components copied need (`ARCHITECTURE_OF`) and the user gave otherwise (but for an `ALLOWED_CHANGES`), or
    `model.backbone.weights` given beside `init_from`."""
    mine, theirs = flattened(to_dict(config)), flattened(to_dict(source.config))
    if "model.backbone.weights" in given and mine["model.backbone.weights"] is not None:
        raise ConfigError(f"{where}: 'model.backbone.weights' = {shown(mine['model.backbone.weights'])} and "
                          f"'model.init_from' = {shown(config.model.init_from)} both give starting weights: give one")
    needed = {key for component in config.model.init_components for key in ARCHITECTURE_OF[component]}
    for key in ARCHITECTURE:
        if key in needed and key in given and not _same(mine[key], theirs[key]) \
                and (key, theirs[key], mine[key]) not in ALLOWED_CHANGES:
            raise ConfigError(f"{where}: '{key}' = {shown(mine[key])}, but model.init_from {source.origin} has "
                              f"{shown(theirs[key])}{_explanation(mine, theirs, key)}: the architecture comes "
                              "from the model fine-tuned; leave the setting out, or start from another model"
                              f"{_fewer_components(key)}")
    merged = dict(mine)
    for key, value in theirs.items():
        if (key.startswith("model.") or key in INPUT_SIZE or key in ARCHITECTURE) and key not in given:
            merged[key] = value
    merged["model.init_from"] = config.model.init_from
    merged["model.init_components"] = list(config.model.init_components)
    merged["model.backbone.weights"] = None
    return from_dict(ExperimentConfig, nested(merged), source=f"{where} with the architecture of {source.origin}")


def _explanation(mine, theirs, key):
    """What an error about `key` adds: the change of it that is allowed, or the anchors per location."""
    for name, source, target in ALLOWED_CHANGES:
        if name == key:
            return f" (of its changes, only {target} in place of the source's {source} keeps the weights)"
    return _anchor_counts(mine, theirs, key)


def _fewer_components(key):
    """The hint where copying fewer components would free `key`: those whose weights do not need it."""
    free = [component for component in FREEZABLE if key not in ARCHITECTURE_OF[component]]
    return f", or copy only components that do not need it (model.init_components: of {free})" if free else ""


def _anchor_counts(mine, theirs, key):
    if not key.startswith("model.anchors.") or key == "model.anchors.sizes":
        return ""
    def count(settings):
        return len(settings["model.anchors.scales"]) * len(settings["model.anchors.aspect_ratios"])

    return f" (anchors per location: {count(mine)} here, {count(theirs)} in the source)"


def _same(a, b):
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return not isinstance(a, (bool, str, type(None))) and not isinstance(b, (bool, str, type(None))) \
            and math.isclose(a, b, rel_tol=1e-6)
    return a == b


def same_name(a, b):
    """Whether two class names are one class: case, `_` and spaces aside ("Teddy_Bear" is COCO's "teddy bear")."""
    return _normalized(a) == _normalized(b)


def _normalized(name):
    return " ".join(name.replace("_", " ").lower().split())


def class_rows(target_names, source_names):
    """{target class index: source class index} of the target classes whose name the source has (`same_name`),
    never by position; placeholders (`PLACEHOLDER_CLASS_NAMES`) match nothing."""
    sources = {}
    for index, name in enumerate(source_names):
        if name not in PLACEHOLDER_CLASS_NAMES:
            sources.setdefault(_normalized(name), index)
    return {index: sources[_normalized(name)] for index, name in enumerate(target_names)
            if _normalized(name) in sources}


def start_from(source, model, target_names, components=FREEZABLE):
    """Copies `source`'s weights of `components` (names of `FREEZABLE`: `model.init_components`) into `model`
    (`transfer_weights`; the class rows by name, where the class subnet is copied) and returns what was done as
    {"source", "loaded", "matched", "new", "fresh"}, each a line-ready text: what `train` logs, writes at the top of
    config.yaml and stores in the model's metadata ("fresh": the components left as built, "none" when all are
    copied)."""
    rows = class_rows(target_names, source.class_names) if "class_head" in components else {}
    try:
        transfer = transfer_weights(source.model, model, rows, components)
    except ValueError as error:
        raise ModelError(f"{source.origin}: its weights do not fit the model: {one_line(error)}") from error
    loaded = ", ".join(f"{component} ({count} tensors)" for component, count in transfer.loaded.items())
    matched = ", ".join(
        target_names[t] if target_names[t] == source.class_names[s] else f"{target_names[t]} ({source.class_names[s]})"
        for t, s in rows.items())
    new = ", ".join(target_names[index] for index in transfer.new_classes)
    fresh = ", ".join(component for component in FREEZABLE if component not in components)
    return {"source": source.origin, "loaded": loaded, "matched": matched or "none", "new": new or "none",
            "fresh": fresh or "none"}


def starting_point(config, given, class_names, category_ids):
    """The model that fine-tuning `config` (with `model.init_from`) on classes `class_names` starts from, before any
    step, and the `start_from` report: to see what the source already finds of the new classes."""
    source = read_source(config.model.init_from)
    config = resolved_config(config, source, given)
    model = build_detector(config, class_names, category_ids)
    return model, start_from(source, model, list(class_names), config.model.init_components)


def report_lines(report):
    """The lines of a `start_from` report, one per group: three, and a fourth where components were left as built."""
    lines = [f"loaded from {report['source']}: {report['loaded']}",
             f"class rows matched by name: {report['matched']}",
             f"classes initialised anew (prior probability): {report['new']}"]
    if report["fresh"] != "none":
        lines.append(f"components initialised anew (model.init_components leaves them out): {report['fresh']}")
    return lines
