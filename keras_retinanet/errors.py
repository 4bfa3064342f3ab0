"""The one base of every error a user's input can cause: a file, a setting, the environment a program runs in.

Its subclasses (`ConfigError`, `DataError`, `ModelError`, ...) name the file, key or value in their message, which
the command lines print as one line instead of a traceback (`keras_retinanet.cli.run_program`). Each also keeps the
built-in base it had (`ValueError`, `RuntimeError`), so code catching that still catches it. This module imports
nothing of ours, so that every module can import it. The stand-alone `export/litert_runner.py` cannot (it is
copied onto devices alone): where our code opens a user's LiteRT model, its `LiteRTModelError` becomes a
`ModelError`.
"""


class InputError(Exception):
    """An error a user's input caused (a file, a setting, the environment); the message, one line, names it."""


class ModelError(InputError, ValueError):
    """A model file that is missing or cannot be loaded safely; the message names the file and the cause."""


def one_line(error, limit=400):
    """The message of `error` on one line, cut after `limit` characters: a cause to quote in an error of ours."""
    return " ".join(str(error).split())[:limit]
