"""Runs one command line of keras_retinanet.cli over many argument lists in this one process (TensorFlow loads
once) and prints, per case, how the program ended: its exit status or message, and what it wrote to stderr.

    python contract_driver.py PROGRAM < cases.json      (cases: [{"argv": [...], "env": {...}}, ...])
"""

import contextlib
import importlib
import io
import json
import os
import sys
import traceback

from absl import flags


def main():
    program = sys.argv[1]
    cases = json.load(sys.stdin)
    module = importlib.import_module(f"keras_retinanet.cli.{program}")
    results = []
    for case in cases:
        flags.FLAGS.unparse_flags()
        saved_environment = dict(os.environ)
        os.environ.update(case.get("env", {}))
        stderr, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                sys.argv = [program, *case["argv"]]
                module.run()
                status = 0
            except SystemExit as ended:  # sys.exit("error: ...") is how a one-line error ends a program
                status = ended.code
            except BaseException:  # a traceback: what the contract forbids
                traceback.print_exc(file=stderr)
                status = "traceback"
        os.environ.clear()
        os.environ.update(saved_environment)
        results.append({"status": status, "stderr": stderr.getvalue()})
    json.dump(results, sys.__stdout__)


if __name__ == "__main__":
    main()
