"""model_dir bookkeeping: the run lock, config.json checks, atomic files and resumable state.

A resumed run must end with the same weights as one that was never interrupted, so the checkpoint
holds every head variable (including the dropout seed-generator states, which Keras keeps out of
`save_weights` and out of a plain `tf.train.Checkpoint(model=...)`), the optimizer, and the epoch.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Iterable

import tensorflow as tf

from ctl_keras.atomic import write_json
from ctl_keras.config import Config

CONFIG_FILE = "config.json"
OPTIONS_FILE = "train_options.json"  # run options outside Config that change the trained weights
LOCK_FILE = ".lock"


class ModelDirLock:
    """Exclusive flock on <model_dir>/.lock; the kernel drops it when the process dies, even by SIGKILL."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self._fd: int | None = None

    def __enter__(self) -> "ModelDirLock":
        os.makedirs(self.model_dir, exist_ok=True)
        path = os.path.join(self.model_dir, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RuntimeError(
                f"model_dir {self.model_dir} is in use by another training run (pid {holder}); "
                "wait for it to finish or use another --model_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _differences(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    keys = (set(old) | set(new)) - set(ignore)
    # JSON turns tuples into lists; compare in that form.
    norm = lambda d: json.loads(json.dumps(d))  # noqa: E731
    old, new = norm(old), norm(new)
    return sorted(k for k in keys if old.get(k) != new.get(k))


def check_or_write_config(model_dir: str, config: Config, options: dict) -> bool:
    """Write config.json + train_options.json, or check them against a previous run's.

    Returns True when the model_dir already held a run of this config. `epochs` may differ (a rerun
    with more epochs extends training); anything else means another experiment.
    """
    config_path = os.path.join(model_dir, CONFIG_FILE)
    options_path = os.path.join(model_dir, OPTIONS_FILE)
    if os.path.exists(config_path):
        with open(config_path) as f:
            old_config = json.load(f)
        old_options = {}
        if os.path.exists(options_path):
            with open(options_path) as f:
                old_options = json.load(f)
        differ = _differences(old_config, config.to_dict(), ignore=("epochs",))
        differ += _differences(old_options, options)
        if differ:
            raise ValueError(
                f"model_dir {model_dir} holds a checkpoint of another config: differs in "
                f"{', '.join(differ)}; use another --model_dir"
            )
        existed = True
    else:
        existed = False
    write_json(config_path, config.to_dict())
    write_json(options_path, options)
    return existed


class TrainState:
    """Resumable state: head variables, optimizer, finished epoch, best validation result, time."""

    def __init__(self, model_dir: str, variables: list, optimizer, max_to_keep: int = 2):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_auc = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_auc")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
        self.checkpoint = tf.train.Checkpoint(
            heads=list(variables), optimizer=optimizer, epoch=self.epoch, best_auc=self.best_auc,
            best_epoch=self.best_epoch, train_seconds=self.train_seconds)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(model_dir, "checkpoints"), max_to_keep=max_to_keep)

    def restore(self) -> int:
        """Restore the last finished epoch, if any; returns it (0 for a fresh run)."""
        path = self.manager.latest_checkpoint
        if path is None:
            return 0
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"checkpoint {path} does not match this model: {first}") from None
        return int(self.epoch.numpy())

    def save(self, epoch: int) -> str:
        self.epoch.assign(epoch)
        return self.manager.save(checkpoint_number=epoch)
