"""BatchNorm (fused kernel on one replica) against keras.layers.BatchNormalization."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.model.batch_norm import BatchNorm


def _pair(channels=6):
    """(ours, keras's) with the same random gamma, beta and moving statistics."""
    rng = np.random.default_rng(0)
    ours, reference = BatchNorm(fused=True, synchronized=True), keras.layers.BatchNormalization(synchronized=True)
    for layer in (ours, reference):
        layer.build((None, channels))
    weights = [rng.normal(size=channels), rng.normal(size=channels), rng.normal(size=channels),
               rng.uniform(0.5, 2.0, size=channels)]
    for layer in (ours, reference):
        layer.set_weights([w.astype("float32") for w in weights])
    return ours, reference


def _train_call(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * tf.sin(tf.range(y.shape[-1], dtype=tf.float32)) * tf.cos(x))
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y, grads


def test_training_step_matches_keras_outputs_gradients_and_moving_averages():
    ours, reference = _pair()
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, size=(40, 6)), tf.float32)
    y, grads = _train_call(ours, x)
    y_ref, grads_ref = _train_call(reference, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-3, atol=1e-4)
    # Moving averages: Keras averages the biased batch variance; the kernel returns the unbiased one.
    np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, rtol=1e-5)
    np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, rtol=1e-5)
    assert not np.allclose(ours.moving_variance, _pair()[0].moving_variance)  # the update happened


def test_inference_is_keras_layer_and_uses_moving_averages():
    ours, reference = _pair()
    x = tf.constant(np.random.default_rng(2).normal(size=(5, 6)), tf.float32)
    np.testing.assert_array_equal(ours(x, training=False), reference(x, training=False))


def test_training_graph_runs_the_fused_kernel_on_one_replica_only():
    ours, _ = _pair()
    x = tf.zeros([8, 6])
    graph = tf.function(lambda x: ours(x, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    # Rank 3 is Keras's path (the head reshapes region maps to rows before its BatchNorm).
    ours3 = BatchNorm(fused=True)
    ours3.build((None, 4, 6))
    graph3 = tf.function(lambda x: ours3(x, training=True)).get_concrete_function(tf.zeros([2, 4, 6])).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph3.get_operations()}
    # fused=None decides by the devices: this machine has no GPU, so Keras's ops.
    auto = BatchNorm()
    auto.build((None, 6))
    graph_auto = tf.function(lambda x: auto(x, training=True)).get_concrete_function(x).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph_auto.get_operations()}


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_policy_normalises_in_float32_and_returns_the_compute_dtype(dtype):
    layer = BatchNorm(fused=True, dtype=dtype)
    layer.build((None, 6))
    y = layer(tf.random.stateless_normal([8, 6], [0, 1]), training=True)
    assert y.dtype == keras.DTypePolicy(dtype).compute_dtype
    np.testing.assert_allclose(tf.reduce_mean(tf.cast(y, tf.float32), axis=0), np.zeros(6), atol=2e-2)


def test_round_trips_through_keras_serialization():
    layer = BatchNorm(fused=True, momentum=0.9, epsilon=1e-4, synchronized=True)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, BatchNorm)
    assert (clone.fused, clone.momentum, clone.epsilon, clone.synchronized) == (True, 0.9, 1e-4, True)
