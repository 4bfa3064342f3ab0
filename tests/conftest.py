import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported


@pytest.fixture
def mixed_bfloat16():
    """Runs a test under the mixed_bfloat16 policy, then restores the previous one."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """The tiny model that `tiny.trained_for_export` trains on `tiny.TRAINED_TINY_CONFIG` (generated shapes: a
    train split, and a val split that the tests use), trained once a session: the export and LiteRT tests each
    take a copy (`tiny.copy_of_trained`). Returns (data folder, model folder)."""
    from tiny import TRAINED_TINY_CONFIG, trained_for_export

    _, data, model_dir = trained_for_export(tmp_path_factory.mktemp("trained_tiny"), TRAINED_TINY_CONFIG,
                                            {"train": 8, "val": 6})
    return data, model_dir
