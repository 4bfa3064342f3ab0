"""Command-line programs; `bin/` and the console scripts are thin wrappers over their `run` functions."""

import sys

from absl import app, flags

flags.DEFINE_bool("traceback", False, "On a data, config, model or training error, print the whole traceback "
                                      "instead of the one-line message.")


def run_program(main, module_name):
    """absl's `app.run(main)`, with `--help` showing the docstring and flags of `module_name`.

    absl documents the flags of the `__main__` module, which for `bin/` wrappers and console scripts is only a shim.
    Bad input (a config, data, model file or LiteRT export error, whose message names the file and value), a
    strategy that cannot run with the settings, backups that cannot be read, and a loss that turned NaN or infinite
    in training (the message names the iteration and the loss term) end the program with that message and exit
    status 1, without a traceback (`--traceback` shows it).
    """
    module = sys.modules[module_name]
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_flags_for_module(module_name) + flags.FLAGS.get_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def checked_main(argv):
        try:
            return main(argv)
        except Exception as error:
            from keras_retinanet.config import ConfigError
            from keras_retinanet.data.policy import DataError
            from keras_retinanet.inference import ModelError

            one_line = (ConfigError, DataError, ModelError)
            training = sys.modules.get("keras_retinanet.training")  # loaded by training
            if training is not None:
                one_line += (training.NonFiniteLossError, training.StrategyError, training.BackupError)
            for module_name, error_name in (("keras_retinanet.export.litert", "LiteRTExportError"),
                                            ("keras_retinanet.export.litert_runner", "LiteRTModelError")):
                if module_name in sys.modules:
                    one_line += (getattr(sys.modules[module_name], error_name),)
            if isinstance(error, one_line) and not flags.FLAGS.traceback:
                sys.exit(f"error: {error}")
            raise

    app.run(checked_main)
