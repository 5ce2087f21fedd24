"""training.optimizer.FusedAdam: keras.optimizers.Adam's results with one fused kernel per variable."""

import keras
import numpy as np
import tensorflow as tf

from ctl_keras.training.optimizer import FusedAdam

SHAPES = [(64, 32), (32,), (5, 7)]


def _run(optimizer_class, steps=20):
    """Variables, momentums and velocities after `steps` updates with seeded gradients; the embedding
    (last variable) gets a sparse gradient through a gather."""
    rng = np.random.default_rng(0)
    dense = [keras.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
    table = keras.Variable(rng.normal(size=(10, 4)).astype(np.float32))
    variables = [*dense, table]
    optimizer = optimizer_class(learning_rate=1e-2)
    optimizer.build(variables)

    @tf.function
    def apply(grads, rows):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table, rows) ** 2)
        sparse = tape.gradient(loss, table)
        optimizer.apply_gradients(zip([*grads, sparse], variables))

    for _ in range(steps):
        grads = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
        apply(grads, tf.constant(rng.integers(0, 10, 3)))
    state = [v.numpy() for v in variables] + [m.numpy() for m in optimizer._momentums]
    return state + [v.numpy() for v in optimizer._velocities], apply, rng


def test_matches_keras_adam():
    """Same formula: every variable and slot agrees with keras.optimizers.Adam after 20 steps. Not to
    the bit: the kernel computes 1 − β₂ in float32 (9.9999e-4 vs 1e-3, 1.3e-5 relative)."""
    ours, _, _ = _run(FusedAdam)
    theirs, _, _ = _run(keras.optimizers.Adam)
    start, _, _ = _run(keras.optimizers.Adam, steps=0)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert all(np.abs(a - s).max() > 1e-2 for a, s in zip(ours[:len(SHAPES) + 1], start))  # they moved


def test_one_fused_op_per_dense_variable():
    """The traced update holds one ResourceApplyAdam per dense gradient (the sparse one falls back)."""
    _, apply, rng = _run(FusedAdam, steps=1)
    grads = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in SHAPES]
    graph = apply.get_concrete_function(grads, tf.constant([1, 2, 3])).graph
    types = [op.type for op in graph.get_operations()]
    assert types.count("ResourceApplyAdam") == len(SHAPES)


def test_checkpoints_are_interchangeable_with_keras_adam(tmp_path):
    """A checkpoint written with keras.optimizers.Adam restores into FusedAdam (same variables)."""
    variable = keras.Variable(np.ones((3, 2), np.float32))
    theirs = keras.optimizers.Adam(learning_rate=0.1)
    theirs.apply_gradients([(tf.constant(np.full((3, 2), 0.5, np.float32)), variable)])
    path = tf.train.Checkpoint(optimizer=theirs).save(str(tmp_path / "ckpt"))
    ours = FusedAdam(learning_rate=0.1)
    ours.build([variable])
    tf.train.Checkpoint(optimizer=ours).restore(path).assert_consumed()
    assert int(ours.iterations.numpy()) == 1
    np.testing.assert_array_equal(ours._momentums[0].numpy(), theirs._momentums[0].numpy())
    np.testing.assert_array_equal(ours._velocities[0].numpy(), theirs._velocities[0].numpy())


def test_keras_adam_contract_is_checked_at_build():
    """FusedAdam reads Adam's private slots: a real build passes the check; a Keras whose Adam lost an
    attribute, or keeps fewer slots, fails at build with one line naming the change and the fix."""
    import pytest

    from ctl_keras.training.optimizer import check_adam_contract

    variables = [keras.Variable(np.zeros(s, np.float32)) for s in SHAPES]
    optimizer = FusedAdam(learning_rate=1e-3)
    optimizer.build(variables)  # runs check_adam_contract on this Keras
    assert len(optimizer._momentums) == len(optimizer._velocities) == len(SHAPES)

    class LostVelocities(keras.optimizers.Adam):  # a future Adam that names its slots differently
        def build(self, var_list):
            super().build(var_list)
            self._second_moments = self.__dict__.pop("_velocities")

    changed = LostVelocities(learning_rate=1e-3)
    changed.build(variables)
    with pytest.raises(RuntimeError, match=r"keras .* changed keras.optimizers.Adam's slots .*_velocities"):
        check_adam_contract(changed, variables)

    class FewerSlots(keras.optimizers.Adam):
        def build(self, var_list):
            super().build(var_list)
            self._momentums = self._momentums[:-1]

    fewer = FewerSlots(learning_rate=1e-3)
    fewer.build(variables)
    with pytest.raises(RuntimeError, match="2 momentums, 3 velocities for 3 variables"):
        check_adam_contract(fewer, variables)
