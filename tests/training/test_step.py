"""training.step: one step for every method; a task supplies per-example losses; model selection."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.training import step


class _Quadratic:
    """A task with a hand-checkable gradient: per-example loss (w − x_i)²."""

    def __init__(self):
        self.w = tf.Variable(0.0)

    def compute_loss(self, batch, training):
        return tf.square(self.w - batch["x"])


def _batches(*rows):
    return tf.data.Dataset.from_tensor_slices({"x": np.array(rows, np.float32)})


def test_step_minimises_the_global_batch_mean_of_the_tasks_losses():
    """x = [1, 3]: loss = mean((0 − x)²) = 5, d/dw = mean(2(w − x)) = −4 -> SGD lr 0.5 moves w to 2."""
    task = _Quadratic()
    opt = keras.optimizers.SGD(0.5)
    fn = step.make_train_step(tf.distribute.get_strategy(), task, opt, [task.w], global_batch_size=2)
    losses = fn(iter(_batches([1.0, 3.0])))
    assert losses.numpy().tolist() == pytest.approx([5.0]) and float(task.w.numpy()) == pytest.approx(2.0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_several_steps_per_call_equal_one_step_per_call(jit_compile):
    """N steps inside one tf.function call: the same losses and weights as N calls of one step; a call
    returns fewer than N losses when the data runs out, and none once it is empty."""
    rows = [[1.0, 3.0], [0.5, -1.0], [2.0, 2.0], [4.0, 0.0], [-3.0, 1.0]]
    results = {}
    for n in (1, 2, 4):
        task = _Quadratic()
        fn = step.make_train_step(tf.distribute.get_strategy(), task, keras.optimizers.Adam(0.1), [task.w], 2,
                                  steps_per_execution=n, jit_compile=jit_compile)
        iterator, calls = iter(step.stack_batches(fn, _batches(*rows))), []
        while True:
            calls.append(fn(iterator).numpy().tolist())
            if len(calls[-1]) < n:
                break
        results[n] = ([x for c in calls for x in c], float(task.w.numpy()), [len(c) for c in calls])
    assert results[2][2] == [2, 2, 1] and results[4][2] == [4, 1] and results[1][2] == [1] * 5 + [0]
    assert results[2][:2] == results[1][:2] and results[4][:2] == results[1][:2]
    assert len(results[1][0]) == 5 and results[1][0][0] == pytest.approx(5.0)


def test_xla_with_several_steps_per_call_runs_each_group_in_one_launch():
    """One replica + XLA + N > 1: the step reads groups of N stacked batches (the last one shorter);
    N = 1, no XLA or a MirroredStrategy read single batches. (That a group trains exactly like N single
    XLA steps: test_several_steps_per_call_equal_one_step_per_call.)"""
    fn = step.make_train_step(tf.distribute.get_strategy(), _Quadratic(), keras.optimizers.Adam(0.1), [], 2,
                              steps_per_execution=4, jit_compile=True)
    groups = list(step.stack_batches(fn, _batches([1.0, 3.0], [0.5, -1.0], [2.0, 2.0], [4.0, 0.0], [-3.0, 1.0])))
    assert fn.stacked == 4 and [g["x"].shape.as_list() for g in groups] == [[4, 2], [1, 2]]
    for kwargs in ({"steps_per_execution": 1, "jit_compile": True}, {"steps_per_execution": 4}):
        single = step.make_train_step(tf.distribute.get_strategy(), _Quadratic(), keras.optimizers.Adam(0.1), [],
                                      2, **kwargs)
        assert single.stacked == 0 and step.stack_batches(single, _batches([1.0, 3.0])).element_spec["x"].shape == [2]
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    with mirrored.scope():
        task = _Quadratic()
    fn = step.make_train_step(mirrored, task, keras.optimizers.Adam(0.1), [task.w], 2, steps_per_execution=4,
                              jit_compile=True)
    assert fn.stacked == 0


def test_run_epoch_means_losses_and_stops_on_nan():
    losses = iter([[1.0], [3.0], []])
    assert step.run_epoch(lambda it: next(losses), [0, 1], epoch=1)[:2] == (2.0, 2)
    values = iter([[1.0], [float("inf")]])
    with pytest.raises(step.TrainingDiverged, match="loss is inf at epoch 3 step 2; stopped without saving, kept X"):
        step.run_epoch(lambda it: next(values), [0, 1], epoch=3, kept="kept X")


def test_run_epoch_counts_every_step_of_multi_step_calls():
    calls = iter([[1.0, 2.0, 3.0], [4.0, float("nan"), 6.0]])
    fn = lambda it: next(calls)
    fn.steps_per_execution = 3
    with pytest.raises(step.TrainingDiverged, match="loss is nan at epoch 1 step 5;"):
        step.run_epoch(fn, [0], epoch=1)
    calls = iter([[1.0, 2.0, 3.0], [4.0]])
    assert step.run_epoch(fn, [0], epoch=1)[:2] == (2.5, 4)


def test_batches_dataset_keeps_every_numpy_batch_in_order():
    batches = [{"a": np.full((2, 3), i, np.float32), "c": np.arange(2, dtype=np.int32) + i} for i in range(3)]
    got = list(step.batches_dataset(iter(batches)).as_numpy_iterator())
    assert [b["a"][0, 0] for b in got] == [0, 1, 2] and got[2]["c"].tolist() == [2, 3]
    with pytest.raises(ValueError, match="no full training batch"):
        step.batches_dataset(iter([]))


def test_eval_epochs_every_n_and_the_last():
    assert [e for e in range(1, 26) if step.is_eval_epoch(e, 25, 10)] == [10, 20, 25]


def test_best_epoch_restores_the_best_values():
    v = tf.Variable([0.0, 0.0])
    best = step.BestEpoch([v])
    for epoch, auc in ((1, 0.6), (2, 0.8), (3, 0.7)):
        v.assign([epoch, -epoch])
        best.update(epoch, auc)
    best.restore()
    assert best.epoch == 2 and best.auc == 0.8 and v.numpy().tolist() == [2.0, -2.0]
    assert [h["epoch"] for h in best.history] == [1, 2, 3]
