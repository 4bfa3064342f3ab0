"""Mixed precision: Keras' global dtype policy, set while a model's layers are created."""

import contextlib

import keras

# The Keras dtype policies a model trains under (`train.dtype_policy`).
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@contextlib.contextmanager
def dtype_policy_scope(name):
    """Keras' global dtype policy set to `name` ("float32", "mixed_bfloat16", ...; None: left as it is) for the
    layers created inside, and restored after, so that models built later in the process are not affected. Models
    whose layers are created in their constructor (functional models) record the policy in their config and rebuild
    under it on loading."""
    if name is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
