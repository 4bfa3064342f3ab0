"""One base for every error a user's input causes (`keras_retinanet.errors.InputError`), which the command lines
print as one line, and only that base."""

import os
import subprocess
import sys

import pytest

from keras_retinanet.config import ConfigError
from keras_retinanet.data.images import ImageProblem
from keras_retinanet.data.policy import DataError
from keras_retinanet.datasets.raccoon import DatasetFetchError
from keras_retinanet.errors import InputError
from keras_retinanet.export.litert import LiteRTExportError
from keras_retinanet.inference import ModelError
from keras_retinanet.pretrained import WeightsFetchError
from keras_retinanet.pretrained.download import DownloadError
from keras_retinanet.training import BackupError, NonFiniteLossError, StrategyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("error, builtin", [
    (ConfigError, ValueError), (DataError, ValueError), (ImageProblem, ValueError), (ModelError, ValueError),
    (StrategyError, ValueError), (LiteRTExportError, ValueError), (WeightsFetchError, ValueError),
    (BackupError, RuntimeError), (NonFiniteLossError, RuntimeError), (DownloadError, RuntimeError),
    (DatasetFetchError, RuntimeError),
])
def test_every_input_error_keeps_its_builtin_base(error, builtin):
    assert issubclass(error, InputError) and issubclass(error, builtin)


def _program_raising(error, *flags):
    """A command line through `run_program` whose main raises `error` (source text): (exit status, stderr)."""
    code = ("import sys\n"
            "from keras_retinanet.cli import run_program\n"
            "from keras_retinanet.errors import InputError\n"
            "class SettingError(InputError, ValueError): pass\n"
            f"def main(argv): raise {error}\n"
            f"sys.argv = ['program', *{list(flags)!r}]\n"
            "run_program(main, '__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "PYTHONPATH": ROOT})
    return result.returncode, result.stderr


def test_run_program_prints_an_input_error_as_one_line():
    status, stderr = _program_raising("SettingError('a.yaml: \\'x\\' must be in [0, 1], got 2')")
    assert (status, stderr) == (1, "error: a.yaml: 'x' must be in [0, 1], got 2\n")


def test_run_program_shows_the_traceback_of_other_errors_and_on_request():
    status, stderr = _program_raising("ValueError('a bug')")
    assert status == 1 and "Traceback" in stderr and "ValueError: a bug" in stderr
    status, stderr = _program_raising("SettingError('bad')", "--traceback")
    assert status == 1 and "Traceback" in stderr and "SettingError: bad" in stderr
