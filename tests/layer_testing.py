"""`run_layer_test`: the checks every custom layer passes (as KerasHub's `run_layer_test`); inputs for layer tests."""

import math

import keras
import numpy as np
import tensorflow as tf


def run_layer_test(layer, inputs, expected_output_shape, expected_num_trainable_weights,
                   expected_num_non_trainable_weights, tmp_path, call_kwargs=None):
    """Calls `layer` on `inputs` (a list of positional arguments) and checks:

    - the output's shape (a tuple, or a nested structure of tuples like the output's);
    - the numbers of trainable and non-trainable weights;
    - `get_config` round trip through Keras serialisation, under `safe_mode`, to an equal config;
    - a `.keras` file of a model holding the layer (when every input is an array) loads with `safe_mode=True` and
      gives the same outputs; a layer without tensor inputs gives the same outputs from its deserialised copy.
    """
    call_kwargs = call_kwargs or {}
    outputs = layer(*inputs, **call_kwargs)
    shapes = keras.tree.map_structure(lambda tensor: tuple(tensor.shape), outputs)
    assert shapes == expected_output_shape, f"{layer.name}: output shapes {shapes}"
    assert len(layer.trainable_weights) == expected_num_trainable_weights, layer.name
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, layer.name

    serialized = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config(), layer.name

    if all(isinstance(item, np.ndarray) or _is_array_list(item) for item in inputs):
        model = keras.Model(*_functional(layer, inputs, call_kwargs))
        path = str(tmp_path / f"{layer.name}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        expected, actual = model(inputs), loaded(inputs)
    else:
        expected, actual = outputs, clone(*inputs, **call_kwargs)
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6), expected, actual
    )


def _is_array_list(item):
    return isinstance(item, list) and all(isinstance(element, np.ndarray) for element in item)


def _functional(layer, inputs, call_kwargs):
    """(symbolic inputs, outputs) of a model that calls `layer` on inputs shaped like `inputs`."""
    def symbolic(array):
        return keras.Input(shape=array.shape[1:], batch_size=array.shape[0], dtype=tf.as_dtype(array.dtype).name)

    model_inputs = [[symbolic(a) for a in item] if isinstance(item, list) else symbolic(item) for item in inputs]
    return model_inputs, layer(*model_inputs, **call_kwargs)


def pyramid_features(height, width, channels=(8, 12, 16), seed=0):
    """[C3, C4, C5]-like random maps (batch 2) of a `height` x `width` image."""
    rng = np.random.default_rng(seed)
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in (8, 16, 32)]
    return [rng.normal(size=(2, h, w, c)).astype(np.float32) for (h, w), c in zip(sizes, channels)]
