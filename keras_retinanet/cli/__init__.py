"""Command-line programs; `bin/` and the console scripts are thin wrappers over their `run` functions."""

import os
import sys

from absl import app, flags

from keras_retinanet.errors import InputError

flags.DEFINE_bool("traceback", False, "On an error of the input (a data, config or model file, a setting), print "
                                      "the whole traceback instead of the one-line message.")


def run_program(main, module_name):
    """absl's `app.run(main)`, with `--help` showing the docstring and flags of `module_name`.

    absl documents the flags of the `__main__` module, which for `bin/` wrappers and console scripts is only a shim.
    An `InputError` (bad input: a config, data, model file or LiteRT export error, whose message names the file and
    value; a strategy that cannot run with the settings, backups that cannot be read, a loss that turned NaN or
    infinite in training, naming the iteration and the loss term) ends the program with that message and exit
    status 1, without a traceback (`--traceback` shows it). TensorFlow's C++ log lines below errors are hidden
    (`TF_CPP_MIN_LOG_LEVEL=2`) unless that variable is set.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read once, when TensorFlow is first imported
    module = sys.modules[module_name]
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_flags_for_module(module_name) + flags.FLAGS.get_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def checked_main(argv):
        try:
            return main(argv)
        except InputError as error:
            if flags.FLAGS.traceback:
                raise
            sys.exit(f"error: {error}")

    app.run(checked_main)
