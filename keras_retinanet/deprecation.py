"""Old argument names that keep working, with a `DeprecationWarning` naming the new one."""

import importlib
import warnings


def renamed_argument(where, new_name, new_value, old_name, old_value):
    """The value of argument `new_name` of `where`, or that of its old name `old_name` (with a DeprecationWarning)
    when only the old one was given (not given: None); a TypeError when both were."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"{where}: give {new_name} only ({old_name} is its old name)")
    warnings.warn(f"{where}: {old_name} is now called {new_name}", DeprecationWarning, stacklevel=3)
    return old_value


def moved_names(module, moves):
    """A module `__getattr__` for `module` (its `__name__`) that gives each name of `moves` ({name: the module it
    moved to}) from its new module, with a DeprecationWarning naming it."""

    def __getattr__(name):
        if name not in moves:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved to {moves[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(moves[name]), name)

    return __getattr__
