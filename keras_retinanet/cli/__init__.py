"""Command-line programs; `bin/` and the console scripts are thin wrappers over their `run` functions."""

import sys

from absl import app, flags


def run_program(main, module_name):
    """absl's `app.run(main)`, with `--help` showing the docstring and flags of `module_name`.

    absl documents the flags of the `__main__` module, which for `bin/` wrappers and console scripts is only a shim.
    """
    module = sys.modules[module_name]
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main)
