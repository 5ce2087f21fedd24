"""The custom distributed training loop: strategy, train step, epochs, evaluation, resume.

A `strategy.run` loop rather than `Model.fit`: Keras 3 `fit` breaks under multi-worker strategies
(keras-team/keras#20585), and the loop has to checkpoint seed-generator state that `fit` does not.

`full_scene` is a training choice only (paper Table 2, "train with full images"): validation (model
selection) and the test AUC are always on the CTL-cropped scenes, where the product is not visible.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ctl_keras.evaluation import embed
from ctl_keras.utils import progress
from ctl_keras.config import Config
from ctl_keras.data import dataset_dir, pipeline
from ctl_keras.data.fingerprint import dataset_fingerprint
from ctl_keras.evaluation import seen_scenes
from ctl_keras.model.ctl import build_ctl
from ctl_keras.model.loss import triplet_hinge
from ctl_keras.model import run_dir
from ctl_keras.training import checkpointing
from ctl_keras.training.cluster import worker_temp_dir
from ctl_keras.training.run_options import RunOptions
from ctl_keras.training.optimizer import make_optimizer
from ctl_keras.training.step import (  # noqa: F401 (TrainingDiverged: part of train()'s contract)
    TrainingDiverged, is_eval_epoch, make_train_step, run_epoch, stack_batches)
from ctl_keras.training.strategies import make_strategy, workers
from ctl_keras.training.summaries import Summaries

IMAGE_KEYS = ("scene", "positive", "negative", "category")
# Batches are copied to each replica's device (GPU memory on a GPU) by a background prefetch, two
# per replica deep, so the step never waits for a host-to-device copy (image and cache path alike).
DEVICE_PREFETCH = 2
DEVICE_INPUT = tf.distribute.InputOptions(experimental_fetch_to_device=True,
                                          experimental_per_replica_buffer_size=DEVICE_PREFETCH)
ATTENTION_EXAMPLES = 8


class TripletTask:
    """Our model as a training task (training.step): per-example hinge [d(s,p+) − d(s,p−) + margin]₊."""

    def __init__(self, triplet: keras.Model, margin: float):
        self.triplet, self.margin = triplet, margin

    def compute_loss(self, batch, training: bool):
        out = self.triplet(batch, training=training)
        return triplet_hinge(out["d_pos"], out["d_neg"], self.margin)


def _train_dataset(config: Config, options: RunOptions, features, epoch_index: int, step_fn=None) -> tf.data.Dataset:
    """Full batches only: a short last batch splits unevenly over replicas, and MirroredStrategy then
    traces replicas whose synchronized-BatchNorm all-reduces do not pair up (regroup AssertionError).
    The dropped remainder (< batch_size triplets) changes with the per-epoch shuffle. Stacked in groups
    when `step_fn` reads groups (training.step.stack_batches); the feature cache gathers a group at once."""
    group = getattr(step_fn, "stacked", 0) if features is not None else 0
    if features is not None:  # grouped, the cache gathers a step's group at once (full batches only)
        ds = features.train_dataset(config, epoch_index, config.batch_size, group=group)
    else:
        ds = pipeline.make_dataset(config, "train", options.data_dir, epoch_index=epoch_index,
                                   full_scene=options.full_scene, batch_size=config.batch_size)
        # Only the model inputs cross to the replicas (ids are strings the devices do not need).
        ds = ds.map(lambda b: {k: b[k] for k in IMAGE_KEYS})
    if not group:
        ds = stack_batches(step_fn, ds.filter(lambda b: tf.shape(b["category"])[0] == config.batch_size))
    # Every worker reads the same global batches and keeps its replicas' slices of each, so a
    # multi-worker step sees exactly the global batch of a one-worker run (AUTO would shard by file).
    shard = tf.data.Options()
    shard.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(shard)


def device_batches(strategy: tf.distribute.Strategy, ds: tf.data.Dataset):
    """The epoch's batches on the replicas' devices, two batches ahead of the step.

    Several replicas (or workers): the strategy's distributed dataset, which splits each global batch
    and fetches the slices to the devices (DEVICE_INPUT). One device: the plain dataset, with
    `prefetch_to_device` when that device is a GPU. A distributed iterator costs ~1 ms per batch
    here even for one device, 20x the plain one (benchmarks/train_step.py, host), more than a GPU's
    whole cached step.
    """
    if not isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return strategy.experimental_distribute_dataset(ds, DEVICE_INPUT)
    device = strategy.extended.worker_devices[0]
    if tf.config.list_logical_devices("GPU") and "GPU" in device.upper():
        ds = ds.apply(tf.data.experimental.prefetch_to_device(device, buffer_size=DEVICE_PREFETCH))
    return ds


class Trainer:
    """Holds the models, optimizer and state of one run; `run()` trains to config.epochs."""

    def __init__(self, config: Config, options: RunOptions, strategy: tf.distribute.Strategy, out_dir: str):
        """`out_dir`: where this process writes: the model_dir, or a temporary dir on the workers of a
        multi-worker run that do not write (their copies take part in the collectives, then go)."""
        keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
        self.config, self.options, self.out_dir = config, options, out_dir
        self.writer = options.cluster is None or options.cluster.is_writer
        self.manifest = dataset_dir.read_manifest(options.data_dir, config.dataset)
        self.strategy = strategy
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"batch_size {config.batch_size} is not a multiple of the {replicas} replicas")
        # Full batches only (_train_dataset), so every epoch has this many steps.
        self.steps_per_epoch = self.manifest["splits"]["train"]["pairs"] // config.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{options.data_dir} has fewer train pairs than one batch of {config.batch_size}")
        with self.strategy.scope():
            self.models = build_ctl(config)
            self.triplet = self.models.triplet_model(from_features=options.feature_cache)
            self.optimizer = make_optimizer(config, self.steps_per_epoch)
            # Only the heads train; the frozen backbone is not a variable of CTLHeads.
            self.variables = list(self.models.heads.trainable_variables)
            self.optimizer.build(self.variables)
        # Every head variable, including BatchNorm statistics and dropout seed states.
        self.state = checkpointing.TrainState(options.model_dir, self.models.heads.variables, self.optimizer,
                                              save_dir=out_dir)
        self.features = None
        self.summaries: Summaries | None = None  # created by run(): nothing is written before it
        # Wall seconds of this process's parts (results.json "timing"; the demo prints them).
        self.timing = {"feature_cache": 0.0, "epochs": 0.0, "validation": 0.0, "final_test": 0.0}

    def _load_features(self) -> None:
        from ctl_keras.feature_cache import FeatureCache, default_cache_dir

        precision = self.options.backbone_precision
        cache_dir = self.options.feature_cache_dir or default_cache_dir(self.config, self.options.data_dir,
                                                                        self.options.full_scene, precision)
        if not self.writer:  # one worker builds; the others wait for the complete cache
            from ctl_keras.feature_cache import build, coordination

            want = build.identity(self.config, self.options.data_dir, self.options.full_scene, precision)
            coordination.wait_until_built(cache_dir, want, self.options.worker_timeout)
            self.features = FeatureCache(cache_dir)
            return
        self.features = FeatureCache.build_or_load(self.config, self.options.data_dir, cache_dir,
                                                   self.models.backbone, full_scene=self.options.full_scene,
                                                   jit_compile=self.options.jit_compile,
                                                   backbone_precision=precision,
                                                   min_agreement=self.options.min_backbone_agreement)

    def _auc(self, split: str) -> float:
        """AUC on the cropped scenes of `split`, whatever the train scenes are."""
        return embed.validation_auc(self.models, self.config, self.options.data_dir, split, features=self.features)

    def _epoch(self, epoch: int, step_fn) -> tuple[float, int, float]:
        """Train one epoch; returns (mean loss, steps, seconds). Raises TrainingDiverged on NaN/inf."""
        ds = device_batches(self.strategy, _train_dataset(self.config, self.options, self.features, epoch - 1, step_fn))
        kept = (f"the checkpoint of epoch {epoch - 1} in {self.options.model_dir} is kept"
                if epoch > 1 else f"no checkpoint was written to {self.options.model_dir}")
        return run_epoch(step_fn, ds, epoch, self.steps_per_epoch, kept)

    def _evaluate(self, epoch: int) -> None:
        auc = self._auc("val")
        if auc > float(self.state.best_auc.numpy()):
            self.state.best_auc.assign(auc)
            self.state.best_epoch.assign(epoch)
            self.models.save_heads(self._path(run_dir.weights_file("best")))  # atomic
        self.summaries.scalars(epoch, {"val/auc": auc})
        images, attention, names = embed.attention_examples(
            self.models, self.config, self.options.data_dir, ATTENTION_EXAMPLES, features=self.features)
        self.summaries.attention(epoch, images, attention, names)
        logging.info("epoch %d/%d: val AUC %.4f (best %.4f at epoch %d)", epoch, self.config.epochs, auc,
                     float(self.state.best_auc.numpy()), int(self.state.best_epoch.numpy()))

    def _path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def run(self) -> dict:
        config = self.config
        start_epoch = self.state.restore()
        if start_epoch:
            logging.info("resuming %s after epoch %d", self.options.model_dir, start_epoch)
            best = os.path.join(self.options.model_dir, run_dir.weights_file("best"))
            if not self.writer and os.path.exists(best):  # _finish reloads the best epoch from out_dir
                shutil.copyfile(best, self._path(run_dir.weights_file("best")))
        self.summaries = Summaries(self.out_dir)
        if self.options.feature_cache:
            start = time.perf_counter()
            self._load_features()
            self.timing["feature_cache"] = time.perf_counter() - start
        step_fn = make_train_step(self.strategy, TripletTask(self.triplet, config.margin), self.optimizer,
                                  self.variables, config.batch_size,
                                  steps_per_execution=self.options.steps_per_execution,
                                  jit_compile=self.options.jit_compile)
        # The run's bar (epochs, ETA of the run) above each epoch's own (steps/s, ETA of the epoch).
        with progress.Progress(total=config.epochs, desc="train", unit="epoch", initial=start_epoch) as bar:
            for epoch in range(start_epoch + 1, config.epochs + 1):
                loss, steps, seconds = self._epoch(epoch, step_fn)
                self.state.train_seconds.assign_add(seconds)
                self.timing["epochs"] += seconds
                self.summaries.scalars(epoch, {
                    "train/loss": loss, "train/steps_per_second": steps / max(seconds, 1e-9),
                    "train/learning_rate": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))})
                if is_eval_epoch(epoch, config.epochs, config.eval_every):
                    start = time.perf_counter()
                    self._evaluate(epoch)
                    self.timing["validation"] += time.perf_counter() - start
                self.models.save_heads(self._path(run_dir.weights_file("last")))
                # Last: until this rename lands a rerun repeats the epoch, which gives the same result.
                self.state.save(epoch)
                best = float(self.state.best_auc.numpy())  # -1 until the first validation
                bar.update(1, loss=round(loss, 4), **({"best_val_auc": round(best, 4)} if best >= 0 else {}))
        return self._finish(max(start_epoch, config.epochs))

    def _finish(self, epochs_run: int) -> dict:
        best = self._path(run_dir.weights_file("best"))
        if not os.path.exists(best):
            raise FileNotFoundError(f"{best} is missing: no evaluation finished in {self.options.model_dir}")
        start = time.perf_counter()
        self.models.load_heads(best)
        test_auc = self._auc("test")
        ids, categories, matrix = embed.product_embeddings(
            self.models, self.config, self.options.data_dir, "test", features=self.features)
        names = [self.config.categories[int(c)] for c in np.asarray(categories)]
        self.summaries.projector(ids, names, matrix)
        self.summaries.close()
        self.timing["final_test"] = time.perf_counter() - start
        # Before results.json: evaluate --cross_dataset counts test scenes of other data seen here.
        seen_scenes.write(self.out_dir, self.options.data_dir)
        out = run_dir.write_results(
            self.options.model_dir, self.config, val_auc=float(self.state.best_auc.numpy()),
            test_auc=test_auc, best_epoch=int(self.state.best_epoch.numpy()), epochs_run=epochs_run,
            train_seconds=float(self.state.train_seconds.numpy()),
            extra={**self.options.recorded(), "data_dir": os.path.abspath(self.options.data_dir),
                   "data_fingerprint": dataset_fingerprint(self.options.data_dir),
                   "strategy": self.options.strategy, "workers": workers(self.strategy),
                   "steps_per_execution": self.options.steps_per_execution,
                   "jit_compile": self.options.jit_compile,
                   "timing": {f"{k}_seconds": round(v, 3) for k, v in self.timing.items()},
                   "replicas": self.strategy.num_replicas_in_sync,
                   "trained_on": "full" if self.options.full_scene else "cropped", "scored_on": "cropped"})
        logging.info("done (trained on %s scenes): val AUC %.4f (epoch %d), test AUC %.4f on cropped scenes -> %s",
                     out["trained_on"], out["val_auc"], out["best_epoch"], test_auc,
                     self._path(run_dir.RESULTS_FILE))
        return out


def train(config: Config, options: RunOptions) -> dict:
    """Train (or resume) in options.model_dir under its lock; returns the results.json content.

    Multi-worker: every worker runs this; only the writer (chief, else worker 0) takes the lock and
    writes into model_dir, the others write their copies into a temporary dir they remove.
    """
    dataset_dir.read_manifest(options.data_dir, config.dataset)  # fail before touching model_dir
    if options.feature_cache is None:  # as the run being resumed recorded it, else on
        options = dataclasses.replace(options, feature_cache=bool(
            checkpointing.recorded_option(options.model_dir, "feature_cache", True)))
    options = _resolve_backbone_precision(options)
    recorded = {**options.recorded(), checkpointing.DATASET_KEY: {
        "fingerprint": dataset_fingerprint(options.data_dir), "data_dir": os.path.abspath(options.data_dir)},
        checkpointing.SCHEDULE_KEY: options.schedule()}
    task = options.cluster.name if options.cluster else "this worker"
    strategy = make_strategy(options.strategy, options.worker_timeout, task)
    if options.cluster is not None and not options.cluster.is_writer:
        out_dir = worker_temp_dir(options.cluster)
        try:
            return Trainer(config, options, strategy, out_dir).run()
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
    # The models are built (and --backbone_weights loaded) before anything is written to model_dir.
    trainer = Trainer(config, options, strategy, options.model_dir)
    with checkpointing.ModelDirLock(options.model_dir):
        checkpointing.check_or_write_config(options.model_dir, config, recorded)
        return trainer.run()


def _resolve_backbone_precision(options: RunOptions) -> RunOptions:
    """None: as the run being resumed recorded it (else float32); auto: what this machine computes natively
    (one log line). Recorded resolved, so a resume on other hardware keeps the run's features."""
    from ctl_keras.model import precision  # noqa: PLC0415

    choice, what = options.backbone_precision, "feature cache"
    if choice is None:
        choice = checkpointing.recorded_option(options.model_dir, "backbone_precision", "float32")
        what = "feature cache (the run's recorded precision)"
    if options.feature_cache:
        choice = precision.resolve_and_log(choice, what)
    elif choice == "auto":
        choice = "float32"  # the image path keeps its float32 backbone
    return dataclasses.replace(options, backbone_precision=choice)
