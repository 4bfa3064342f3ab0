"""The package's import graph, read from its sources, and what light imports load.

`import keras_retinanet.config` and every command line's `--help` load neither TensorFlow nor Keras; modules import
each other without circles at module level, nothing below `cli/` imports it, `config.py` imports only the
layers it takes its allowed values from, and ARCHITECTURE.md's package table names what each package imports, in
an order imports run down.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "keras_retinanet"
HEAVY = ("tensorflow", "keras")
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT)}


def package_modules():
    """{dotted name: source file} of every module of the package (a package by its `__init__.py`)."""
    modules = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = package_modules()


def _statements(tree, module_level):
    """The statements run on import (`if` and `try` blocks included), or all of them."""
    if not module_level:
        yield from ast.walk(tree)
        return
    pending = list(tree.body)
    while pending:
        statement = pending.pop()
        yield statement
        if isinstance(statement, (ast.If, ast.Try)):
            pending += statement.body + statement.orelse + getattr(statement, "finalbody", [])
            pending += [inner for handler in getattr(statement, "handlers", []) for inner in handler.body]


def imported(path, module_level):
    """The package's modules that the source `path` imports: `from a import b` is `a.b` where that is a module,
    else `a`."""
    names = set()
    for statement in _statements(ast.parse(path.read_text(), str(path)), module_level):
        if isinstance(statement, ast.Import):
            names.update(alias.name for alias in statement.names)
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            names.update(f"{statement.module}.{alias.name}" if f"{statement.module}.{alias.name}" in MODULES
                         else statement.module for alias in statement.names)
    return {name for name in names if name in MODULES}


def import_graph(module_level):
    return {name: imported(path, module_level) for name, path in MODULES.items()}


def find_circle(graph):
    """One circle of imports in `graph` ({module: imported modules}) as a list of modules, or None."""
    done, stack = set(), []

    def visit(module):
        if module in stack:
            return stack[stack.index(module):] + [module]
        if module in done:
            return None
        stack.append(module)
        for target in sorted(graph[module]):
            circle = visit(target)
            if circle:
                return circle
        stack.pop()
        done.add(module)
        return None

    return next(filter(None, map(visit, sorted(graph))), None)


def test_the_graph_reader_finds_imports_and_circles():
    graph = import_graph(module_level=False)
    assert "keras_retinanet.errors" in graph["keras_retinanet.config"]
    assert "keras_retinanet.models" in graph["keras_retinanet.inference"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_at_module_level():
    assert find_circle(import_graph(module_level=True)) is None


def test_nothing_below_cli_imports_it():
    cli = f"{PACKAGE}.cli"
    upward = {module: sorted(name for name in targets if name.startswith(cli))
              for module, targets in import_graph(module_level=False).items() if not module.startswith(cli)}
    assert {module: names for module, names in upward.items() if names} == {}


def test_the_bottom_modules_import_nothing_above_them():
    """`errors.py`, `deprecation.py` and the stand-alone LiteRT runner import nothing of ours; `config.py` only the
    modules that define its allowed values (at first validation), never training, inference or the models."""
    graph = import_graph(module_level=False)
    assert graph["keras_retinanet.errors"] == set()
    assert graph["keras_retinanet.deprecation"] == set()
    assert graph["keras_retinanet.export.litert_runner"] == set()
    allowed = ("errors", "precision", "backbones", "data", "layers", "losses")
    assert {name for name in graph["keras_retinanet.config"]
            if not name.removeprefix(f"{PACKAGE}.").startswith(allowed)} == set()


def _loaded_after(code):
    """The heavy modules (TensorFlow, Keras) loaded by running `code` in a fresh Python, and its standard output."""
    probe = f"{code}\nimport sys\nprint('loaded:', *[name for name in {HEAVY!r} if name in sys.modules])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                            env=ENVIRONMENT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    *output, last = result.stdout.splitlines()
    return last.split()[1:], "\n".join(output)


def test_config_errors_and_the_package_face_load_no_tensorflow():
    loaded, _ = _loaded_after("import keras_retinanet, keras_retinanet.config, keras_retinanet.errors")
    assert loaded == []


def test_fetching_data_and_weights_files_loads_no_tensorflow():
    """The downloads (raccoon data, published weights) need no TensorFlow; only converting the weights does."""
    loaded, _ = _loaded_after("import keras_retinanet.datasets.raccoon, keras_retinanet.pretrained")
    assert loaded == []


def test_the_package_face_still_offers_its_parts():
    """`RetinaNet` and the parts load on first use; with them, the classes a saved model names are registered."""
    loaded, output = _loaded_after(
        "import keras_retinanet\n"
        "from keras_retinanet import RetinaNet, backbones, boxes, layers, losses, optimizers\n"
        "import keras\n"
        "assert keras_retinanet.RetinaNet is RetinaNet and keras_retinanet.layers is layers\n"
        "print(sorted(name for name in keras.saving.get_custom_objects() if name.startswith('keras_retinanet>')))"
    )
    assert set(loaded) == set(HEAVY)
    for name in ("RetinaNet", "ResNetBackbone", "FeaturePyramid", "FocalLoss", "WarmupStepDecay", "Matcher"):
        assert f"'keras_retinanet>{name}'" in output


BIN = sorted(path.name for path in (ROOT / "bin").iterdir() if path.is_file())


@pytest.mark.parametrize("program", BIN)
def test_every_command_line_help_loads_no_tensorflow(program):
    """`bin/<program> --help` prints its flags (absl ends it with status 1) without loading TensorFlow."""
    code = ("import runpy, sys\n"
            f"sys.argv = [{str(ROOT / 'bin' / program)!r}, '--help']\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass")
    loaded, output = _loaded_after(code)
    assert "--[no]traceback" in output  # the flags run_program adds: the help was printed
    assert loaded == []


def test_train_help_runs_through_the_cli_module_without_tensorflow():
    loaded, output = _loaded_after("import sys\nfrom keras_retinanet.cli import train\nsys.argv = ['train', '--help']\n"
                                   "try:\n    train.run()\nexcept SystemExit:\n    pass")
    assert "--model_dir" in output
    assert loaded == []


def architecture_table():
    """{unit: allowed imports} from ARCHITECTURE.md's package table: a unit is a top-level module or package
    (`errors`, `data`), its allowed imports the back-quoted names of the "imports from" column ("anything": None)."""
    table = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0] != "`package / module`":
            unit = cells[0].strip("`").removesuffix("/").removesuffix(".py")
            allowed = cells[2]
            table[unit] = None if allowed == "anything" else set(re.findall(r"`([a-z_.]+)`", allowed))
    return table


def _unit(module):
    return module.removeprefix(f"{PACKAGE}.").split(".")[0]


def test_architecture_names_what_each_package_imports():
    """Every import of ours (at module level or in a function) goes to the unit itself or to one the table names
    (a named `a.b` allows that module alone); every name in the table is imported. ARCHITECTURE.md stays true."""
    table = architecture_table()
    graph = import_graph(module_level=False)
    assert set(table) == {_unit(module) for module in MODULES if module != PACKAGE}
    unlisted, unused = {}, {}
    for unit, allowed in table.items():
        targets = {name.removeprefix(f"{PACKAGE}.") for module, names in graph.items()
                   if module != PACKAGE and _unit(module) == unit for name in names if name != PACKAGE}
        targets = {target for target in targets if _unit(target) != unit}
        if allowed is None:
            continue
        unlisted[unit] = sorted(target for target in targets
                                if _unit(target) not in allowed and target not in allowed)
        unused[unit] = sorted(name for name in allowed
                              if not any(target == name or _unit(target) == name for target in targets))
    assert {unit: names for unit, names in unlisted.items() if names} == {}
    assert {unit: names for unit, names in unused.items() if names} == {}


def test_imports_run_down_the_architecture_table():
    """At import time (module level), a unit imports only units above it in ARCHITECTURE.md's table."""
    order = list(architecture_table())
    upward = sorted((module, name) for module, names in import_graph(module_level=True).items() if module != PACKAGE
                    for name in names if name != PACKAGE
                    and order.index(_unit(name)) > order.index(_unit(module)))
    assert upward == []
