"""Every error a user's input can reach through the command lines is an `InputError` (printed as one line).

Walks every `raise` of a built-in exception (`ValueError`, `TypeError`, ...) in the packages that handle users'
files, settings and models, and requires it to be one of `BUILT_IN_RAISES`, each with the reason no user input
reaches it as a traceback: a programming error of a library caller, a value the config's validation already
refused, or an error the only callers turn into an `InputError`. A new `raise ValueError` there fails this test
until it is an `InputError` subclass (`DataError`, `ConfigError`, `ModelError`, ...) or is listed with its reason.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keras_retinanet"
# Where users' data, configs, model files and command-line values arrive.
INPUT_FACING = ("cli", "config.py", "data", "datasets", "evaluation", "export", "inference.py", "pretrained",
                "training", "convert")
BUILT_IN = {"ValueError", "TypeError", "KeyError", "RuntimeError", "OSError", "Exception", "AssertionError"}
SKIPPED = {"export/litert_runner.py"}  # copied onto devices alone: its own LiteRTModelError; bin/evaluate wraps it

_WRAPPED_BY_CALLERS = ("the converters' ValueError names the key, shape or variant; bin/convert_torchvision, "
                       "fine-tuning and bin/fetch_weights turn it into a ModelError naming the file")
BUILT_IN_RAISES = {
    ("config.py", "_convert"): "a config dataclass field of an unsupported type: a programming error",
    ("convert/torchvision.py", "torchvision_config"): _WRAPPED_BY_CALLERS,
    ("convert/torchvision.py", "convert_torchvision_retinanet"): _WRAPPED_BY_CALLERS,
    ("convert/torchvision.py", "load_torchvision_resnet_weights"): _WRAPPED_BY_CALLERS,
    ("convert/torchvision.py", "torchvision_resnet_depth"): _WRAPPED_BY_CALLERS,
    ("convert/torchvision.py", "_assign"): _WRAPPED_BY_CALLERS,
    ("data/augmentation.py", "augment"): "the step types of data.augmentation are validated with the config",
    ("data/dataset.py", "ImageRecord.__post_init__"): "records come from the readers, which refuse such rows with "
                                                      "a DataError; a library caller building records by hand",
    ("data/dataset.py", "DetectionDataset.__post_init__"): "the readers build consistent class lists",
    ("data/dataset.py", "DetectionDataset.label_to_category_id"): "labels of our own detections and records",
    ("data/dataset.py", "DetectionDataset.category_id_to_label"): "category ids of the dataset's own records",
    ("data/dataset.py", "DetectionDataset.shard"): "the worker index comes from tf.distribute, never a user",
    ("data/pipeline.py", "_size_rule"): "data.resize_rule is validated with the config",
    ("data/reading.py", "read_in_any_form"): "a library caller giving an argument under its old and new name",
    ("data/tfrecord.py", "write_tfrecords"): "bin/convert_dataset's --num_shards has a lower bound of 1",
    ("datasets/shapes.py", "render_shape_mask"): "the shape names come from the generator itself",
    ("evaluation/coco_eval.py", "detections_to_coco_results"): "our own detections against our own label map",
    ("evaluation/coco_eval.py", "evaluate_coco"): "image ids of our own detections: a library caller's mistake",
    ("evaluation/coco_eval.py", "_check_results"): "results of our own detections: a library caller's mistake",
    ("training/backups.py", "Backups.restore"): "caught at once: the backup is skipped for the one before it",
}


def built_in_raises():
    """{(file relative to the package, enclosing function): [line, ...]} of raises of built-in exceptions."""
    found = {}
    for top in INPUT_FACING:
        paths = [PACKAGE / top] if top.endswith(".py") else sorted((PACKAGE / top).rglob("*.py"))
        for path in paths:
            relative = path.relative_to(PACKAGE).as_posix()
            if relative not in SKIPPED:
                _collect(ast.parse(path.read_text()), relative, [], found)
    return found


def _collect(node, relative, scope, found):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            _collect(child, relative, scope + [child.name], found)
            continue
        if isinstance(child, ast.Raise) and child.exc is not None:
            raised = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
            if isinstance(raised, ast.Name) and raised.id in BUILT_IN:
                functions = [name for name in scope if not name[:1].isupper()] or scope
                owner = ".".join(scope[-2:]) if len(scope) > 1 and scope[-2][:1].isupper() else functions[-1]
                found.setdefault((relative, owner), []).append(child.lineno)
        _collect(child, relative, scope, found)


def test_every_built_in_raise_where_input_arrives_is_listed_with_its_reason():
    found = built_in_raises()
    unlisted = {f"{file}:{lines[0]} ({function})" for (file, function), lines in found.items()
                if (file, function) not in BUILT_IN_RAISES}
    assert unlisted == set(), "raise an InputError subclass there, or list it with the reason no user reaches it"
    stale = set(BUILT_IN_RAISES) - set(found)
    assert stale == set(), "listed, but no longer raising a built-in exception"


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n    raise ValueError('x')\n", {("m.py", "f"): [2]}),
    ("class A:\n    def g(self):\n        raise TypeError\n", {("m.py", "A.g"): [3]}),
    ("def f():\n    def inner():\n        raise KeyError(1)\n", {("m.py", "inner"): [3]}),
    ("def f():\n    raise DataError('x')\n", {}),
])
def test_the_walk_finds_raises_by_their_enclosing_function(source, expected):
    found = {}
    _collect(ast.parse(source), "m.py", [], found)
    assert found == expected
