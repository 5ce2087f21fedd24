"""One check every custom layer passes (the role of keras-hub's `run_layer_test`).

`run_layer_test` builds the layer, calls it, checks the output shape against `compute_output_shape`,
round-trips `get_config -> from_config` and Keras (de)serialization, and saves the layer inside a small
functional model to a `.keras` file whose reload gives the same outputs. Layer-specific numbers stay in
each layer's own tests; this is the shared part they used to repeat by hand.
"""

from __future__ import annotations

import os

import keras
import numpy as np


def _inputs_like(data, name="x"):
    """keras.Input tensors with the shapes (batch dim free) and dtypes of `data`."""
    if isinstance(data, dict):
        return {k: _inputs_like(v, k) for k, v in data.items()}
    data = np.asarray(data)
    return keras.Input(data.shape[1:], dtype=str(data.dtype), name=name)


def _shape_of(data):
    if isinstance(data, dict):
        return {k: tuple(np.shape(v)) for k, v in data.items()}
    return tuple(np.shape(data))


def run_layer_test(layer_cls, init_kwargs: dict, input_data, expected_output_shape: tuple, *, tmp_path,
                   call_kwargs: dict | None = None, expected_num_trainable_weights: int | None = None,
                   weights: list | None = None, atol: float = 1e-6):
    """Checks `layer_cls(**init_kwargs)` on `input_data` and returns the (first) layer's output.

    input_data: an array, a dict of arrays (one positional dict argument), or a tuple of arrays (several
    positional arguments). `weights`, if given, are set after the build so the checked outputs are known
    values rather than a random initialisation.
    """
    call_kwargs = dict(call_kwargs or {})
    args = input_data if isinstance(input_data, tuple) else (input_data,)

    layer = layer_cls(**init_kwargs)
    output = layer(*args, **call_kwargs)
    if weights is not None:
        layer.set_weights(weights)
        output = layer(*args, **call_kwargs)
    output = np.asarray(output)
    assert output.shape == tuple(expected_output_shape), (output.shape, expected_output_shape)
    assert tuple(layer.compute_output_shape(*[_shape_of(a) for a in args])) == output.shape
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights

    # Config round trip: from_config rebuilds the same layer; serialization finds the registered class.
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is layer_cls and revived.get_config() == config

    # Save -> reload: same outputs from the reloaded weights (inference mode).
    inputs = tuple(_inputs_like(a, f"x{i}") for i, a in enumerate(args))
    model = keras.Model(inputs if len(inputs) > 1 else inputs[0], layer(*inputs, **call_kwargs))
    path = os.path.join(os.fspath(tmp_path), f"{layer_cls.__name__}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    feed = args if len(args) > 1 else args[0]
    np.testing.assert_allclose(np.asarray(reloaded(feed)), np.asarray(model(feed)), atol=atol)
    np.testing.assert_allclose(np.asarray(model(feed)), output, atol=atol)
    return output
