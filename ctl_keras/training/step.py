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
from typing import Callable, Iterator, Protocol

import numpy as np
import tensorflow as tf

from ctl_keras.utils.progress import Progress


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; nothing of the diverged epoch is saved."""


class Task(Protocol):
    def compute_loss(self, batch, training: bool):
        """Per-example losses [B] of one (replica's share of a) batch."""


def make_train_step(strategy: tf.distribute.Strategy, task: Task, optimizer, variables: list,
                    global_batch_size: int, *, steps_per_execution: int = 1,
                    jit_compile: bool = False) -> Callable:
    """`step(iterator) -> float32 [k]`: up to `steps_per_execution` train steps in ONE tf.function call.

    Each step runs one global batch on every replica and yields its global mean loss; k < N means the
    iterator ran out (k = 0: it was already empty). The steps inside a call are the same ops in the
    same order as N calls of one step, so the weights do not depend on N (tests/training/test_step.py);
    what N saves is the host: one Python dispatch and one device-to-host copy per N batches instead of
    per batch (Keras `steps_per_execution`; benchmarks/train_step.py measures it).

    `jit_compile`: compile the step (forward, backward, optimizer update) with XLA, as Keras does for
    `jit_compile=True`. With one replica and N > 1 the N steps become ONE XLA launch: the step then
    reads groups of N batches stacked on a new leading axis (`stack_batches` makes them; its
    `stacked` attribute is N, else 0) and loops over them inside the compiled program, so the host
    costs one launch per N steps instead of N launches and N iterator reads
    (benchmarks/train_step.py, host). Several replicas keep one XLA launch per step. Baselines pass
    `tf.distribute.get_strategy()` (the default, one replica): the same code path.
    """
    if steps_per_execution < 1:
        raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")

    def replica_step(batch):
        with tf.GradientTape() as tape:
            per_example = tf.cast(task.compute_loss(batch, training=True), tf.float32)
            # Mean over the global batch; the optimizer sums the replicas' gradients.
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            scaled = optimizer.scale_loss(loss)  # loss scaling under mixed_float16; identity otherwise
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    def one_step(batch):
        losses = strategy.run(replica_step, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    if jit_compile and steps_per_execution > 1 and _one_replica(strategy):
        step = _stacked_step(one_step, steps_per_execution)
    else:
        if jit_compile:
            one_step = tf.function(one_step, jit_compile=True, reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def step(iterator):
            losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
            for i in tf.range(steps_per_execution):
                batch = iterator.get_next_as_optional()
                if not batch.has_value():
                    break
                losses = losses.write(i, one_step(batch.get_value()))
            return losses.stack()

        step.stacked = 0
    step.steps_per_execution = steps_per_execution
    return step


def _one_replica(strategy: tf.distribute.Strategy) -> bool:
    """One device whose input is the plain dataset (training.loop.device_batches): OneDeviceStrategy or
    the default strategy."""
    return isinstance(strategy, tf.distribute.OneDeviceStrategy) or (
        strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy())


def _stacked_step(one_step: Callable, n: int) -> Callable:
    """`step(iterator of stacked groups) -> float32 [k]`: the k steps of one group in one XLA program."""

    @tf.function(jit_compile=True, reduce_retracing=True)
    def run_group(group):
        k = tf.shape(tf.nest.flatten(group)[0])[0]
        losses = tf.TensorArray(tf.float32, size=k)
        for i in tf.range(k):
            losses = losses.write(i, one_step(tf.nest.map_structure(lambda t: t[i], group)))
        return losses.stack()

    @tf.function(reduce_retracing=True)
    def step(iterator):
        group = iterator.get_next_as_optional()
        if group.has_value():
            return run_group(group.get_value())
        return tf.zeros([0], tf.float32)

    step.stacked = n
    return step


def stack_batches(step_fn: Callable, batches: tf.data.Dataset) -> tf.data.Dataset:
    """The epoch's batches as `step_fn` reads them: groups of N stacked on a new leading axis (the last
    group may be shorter) when it runs N steps in one XLA launch, else unchanged. Apply it before
    `training.loop.device_batches`, so a GPU receives a group in one transfer."""
    n = getattr(step_fn, "stacked", 0)
    return batches.batch(n) if n else batches


def batches_dataset(batches: Iterator[dict]) -> tf.data.Dataset:
    """A tf.data view of a Python iterator of equal-size numpy dict batches (the baselines' epochs),
    for `run_epoch`.

    The epoch is drawn eagerly (the same batches in the same order, so the same random draws) and
    served from memory: not `from_generator`, after which a process runs its train steps slower
    (benchmarks/input_source.py). An iterator without one batch is a ValueError (nothing to train on).
    """
    drawn = list(batches)
    if not drawn:
        raise ValueError("no full training batch: fewer train triplets with a valid negative than one batch")
    return tf.data.Dataset.from_tensor_slices({k: np.stack([np.asarray(b[k]) for b in drawn]) for k in drawn[0]})


def run_epoch(step_fn: Callable, batches, epoch: int, total_steps: int | None = None,
              kept: str = "nothing of this epoch is saved", progress: bool = True) -> tuple[float, int, float]:
    """Run `step_fn` (make_train_step) over one epoch of `batches` (a tf.data or distributed dataset);
    returns (mean loss, steps, seconds).

    Raises TrainingDiverged at the first NaN/inf loss; `kept` says what the caller keeps in that case.
    Progress (ctl_keras.utils.progress: a bar with steps/s and ETA on a terminal, else one log line per ~10 s
    and one per epoch; none with `progress=False`) and the NaN check happen once per call, i.e. every
    steps_per_execution batches.
    """
    per_call = getattr(step_fn, "steps_per_execution", 1)
    total, steps, start = 0.0, 0, time.perf_counter()
    iterator = iter(batches)
    with Progress(total=total_steps, desc=f"epoch {epoch}", unit="step", mode=None if progress else "off") as bar:
        while True:
            losses = np.asarray(step_fn(iterator), np.float64).reshape(-1)
            for loss in losses:
                steps += 1
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"loss is {loss} at epoch {epoch} step {steps}; stopped without "
                                           f"saving, {kept} (lower --learning_rate?)")
                total += loss
            if len(losses):
                bar.update(len(losses), loss=round(total / steps, 4))
            if len(losses) < per_call:
                break
    seconds = time.perf_counter() - start
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
