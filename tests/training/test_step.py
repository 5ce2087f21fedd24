"""training.step: one step for every method; a task supplies per-example losses; model selection."""

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


def test_step_minimises_the_global_batch_mean_of_the_tasks_losses():
    """x = [1, 3]: loss = mean((0 − x)²) = 5, d/dw = mean(2(w − x)) = −4 -> SGD lr 0.5 moves w to 2."""
    task = _Quadratic()
    opt = tf.keras.optimizers.SGD(0.5)
    fn = step.make_train_step(tf.distribute.get_strategy(), task, opt, [task.w], global_batch_size=2)
    loss = float(fn({"x": np.array([1.0, 3.0], np.float32)}))
    assert loss == pytest.approx(5.0) and float(task.w.numpy()) == pytest.approx(2.0)


def test_run_epoch_means_losses_and_stops_on_nan():
    losses = iter([1.0, 3.0])
    assert step.run_epoch(lambda b: next(losses), [0, 1], epoch=1)[:2] == (2.0, 2)
    values = iter([1.0, float("inf")])
    with pytest.raises(step.TrainingDiverged, match="loss is inf at epoch 3 step 2; stopped without saving, kept X"):
        step.run_epoch(lambda b: next(values), [0, 1], epoch=3, kept="kept X")


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
