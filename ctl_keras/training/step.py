"""The one training step and epoch of every learned method: ours (training.loop) and the baselines.

A method trains as a *task*: any object with

    compute_loss(batch, training: bool) -> per-example losses [B]

(the shape of TensorFlow Recommenders' `Model.compute_loss`). The step differentiates the global-batch
mean of those losses with respect to the variables it is given; the task decides what a batch holds
(feature triplets, conv4 maps, ...) and what the loss is (triplet hinge, logistic, BPR, contrastive).
Model selection is the same for every method too: validation every `eval_every` epochs and at the
last epoch, the best validation epoch kept (`is_eval_epoch`, `BestEpoch`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Protocol

import keras
import numpy as np
import tensorflow as tf


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; nothing of the diverged epoch is saved."""


class Task(Protocol):
    def compute_loss(self, batch, training: bool):
        """Per-example losses [B] of one (replica's share of a) batch."""


def make_train_step(strategy: tf.distribute.Strategy, task: Task, optimizer, variables: list,
                    global_batch_size: int) -> Callable:
    """A tf.function running one global batch on every replica; returns the global mean loss.

    Baselines pass `tf.distribute.get_strategy()` (the default, one replica): the same code path.
    """

    def replica_step(batch):
        with tf.GradientTape() as tape:
            per_example = task.compute_loss(batch, training=True)
            # Mean over the global batch; the optimizer sums the replicas' gradients.
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function(reduce_retracing=True)
    def step(batch):
        losses = strategy.run(replica_step, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step


def run_epoch(step_fn: Callable, batches: Iterable, epoch: int, total_steps: int | None = None,
              kept: str = "nothing of this epoch is saved") -> tuple[float, int, float]:
    """Run `step_fn` over one epoch of batches; returns (mean loss, steps, seconds).

    Raises TrainingDiverged at the first NaN/inf loss; `kept` says what the caller keeps in that case.
    """
    bar = keras.utils.Progbar(total_steps, stateful_metrics=["loss"])
    total, steps, start = 0.0, 0, time.perf_counter()
    for batch in batches:
        loss = float(step_fn(batch))
        steps += 1
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss} at epoch {epoch} step {steps}; stopped without saving, "
                                   f"{kept} (lower --learning_rate?)")
        total += loss
        bar.update(steps, [("loss", total / steps)])
    seconds = time.perf_counter() - start
    bar.update(steps, [("loss", total / max(steps, 1))], finalize=True)
    return total / max(steps, 1), steps, seconds


def is_eval_epoch(epoch: int, epochs: int, eval_every: int) -> bool:
    """Validate every `eval_every` epochs (1-based) and after the last one (paper: every 10 epochs)."""
    return epoch % eval_every == 0 or epoch == epochs


class BestEpoch:
    """In-memory model selection: keeps a copy of the variables of the best validation epoch.

    Ours keeps the same thing on disk (best.weights.h5 + TrainState, for resume); a baseline fit is
    short and not resumable, so numpy copies of its variables are enough.
    """

    def __init__(self, variables: list):
        self.variables = variables
        self.auc, self.epoch, self.history = -math.inf, 0, []
        self._values: list | None = None

    def update(self, epoch: int, auc: float) -> bool:
        """Record epoch's validation AUC; returns True (and snapshots the variables) when it is the best."""
        self.history.append({"epoch": epoch, "val_auc": float(auc)})
        if auc > self.auc:
            self.auc, self.epoch = float(auc), epoch
            self._values = [np.array(v.numpy()) for v in self.variables]
            return True
        return False

    def restore(self) -> None:
        """Load the best epoch's values back into the variables (no-op when nothing was validated)."""
        if self._values is not None:
            for v, value in zip(self.variables, self._values):
                v.assign(value)
