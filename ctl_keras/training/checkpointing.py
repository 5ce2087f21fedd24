"""model_dir bookkeeping: the run lock, config.json checks, atomic files and resumable state.

A resumed run must end with the same weights as one that was never interrupted, so the checkpoint
holds every head variable (including the dropout seed-generator states, which Keras keeps out of
`save_weights` and out of a plain `tf.train.Checkpoint(model=...)`), the optimizer, and the epoch.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from typing import Iterable

import tensorflow as tf
from absl import logging

from ctl_keras.utils.atomic import ExclusiveLock, fsync_path, write_json
from ctl_keras.config import Config, schedule_fields
from ctl_keras.model.run_dir import (CHANGES_FILE, CHECKPOINT_DIR, CONFIG_FILE, LOCK_FILE, OPTIONS_FILE,
                                     RESULTS_FILE, weights_file)

DATASET_KEY = "dataset"  # in train_options.json: {"fingerprint": ..., "data_dir": ...}
SCHEDULE_KEY = "schedule"  # in train_options.json: run options a resume may change (steps_per_execution...)


class ModelDirLock(ExclusiveLock):
    """Exclusive flock on <model_dir>/.lock (atomic.ExclusiveLock): one training run per model_dir."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        super().__init__(os.path.join(model_dir, LOCK_FILE), lambda holder: RuntimeError(
            f"model_dir {model_dir} is in use by another training run (pid {holder}); "
            "wait for it to finish or use another --model_dir"))


def _differences(old: dict, new: dict, ignore: Iterable[str] = ()) -> list[str]:
    keys = (set(old) | set(new)) - set(ignore)
    # JSON turns tuples into lists; compare in that form.
    norm = lambda d: json.loads(json.dumps(d))
    old, new = norm(old), norm(new)
    return sorted(k for k in keys if old.get(k) != new.get(k))


def has_run(model_dir: str) -> bool:
    """True when model_dir holds something a rerun must not overwrite: checkpoints or trained weights.

    A config.json alone (left by a run that stopped before its first epoch) is not a run.
    """
    names = (weights_file("last"), weights_file("best"), RESULTS_FILE)
    return bool(checkpoint_files(model_dir)) or any(os.path.exists(os.path.join(model_dir, n)) for n in names)


def checkpoint_files(model_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(model_dir, CHECKPOINT_DIR, "ckpt-*.index")))


def recorded_option(model_dir: str, name: str, default):
    """The run option `name` the run in model_dir recorded (train_options.json), else `default`: a resume
    without the flag keeps what the run trained with. A model_dir that holds no run is fresh (has_run)."""
    path = os.path.join(model_dir, OPTIONS_FILE)
    if not (has_run(model_dir) and os.path.exists(path)):
        return default
    with open(path) as f:
        return json.load(f).get(name, default)


def check_or_write_config(model_dir: str, config: Config, options: dict) -> bool:
    """Write config.json + train_options.json, or check them against a previous run's.

    Returns True when the model_dir already held a run of this config. The schedule settings
    (config.schedule_fields: epochs under a constant rate, eval_every, topk_max; options[SCHEDULE_KEY])
    may differ: a resume logs them and appends them to CHANGES_FILE. Anything else means another
    experiment. A model_dir without checkpoints or weights is fresh whatever its config.json says (a
    first run that failed early).
    """
    config_path = os.path.join(model_dir, CONFIG_FILE)
    options_path = os.path.join(model_dir, OPTIONS_FILE)
    existed = os.path.exists(config_path) and has_run(model_dir)
    if existed:
        with open(config_path) as f:
            old_config = json.load(f)
        if not os.path.exists(options_path):
            raise _stale(model_dir, f"no {OPTIONS_FILE}")
        with open(options_path) as f:
            old_options = json.load(f)
        free = schedule_fields(config)
        differ = _differences(old_config, config.to_dict(), ignore=free)
        # An option a run of an earlier ctl_keras did not record (jit_compile) cannot be checked: it is
        # recorded from now on.
        unrecorded = set(options) - set(old_options)
        differ += _differences(old_options, options, ignore=(DATASET_KEY, SCHEDULE_KEY, *unrecorded))
        if differ:
            why = " (under lr_schedule cosine, epochs sets the decay)" if "epochs" in differ else ""
            raise ValueError(
                f"model_dir {model_dir} holds a checkpoint of another config: differs in "
                f"{', '.join(differ)}{why}; use another --model_dir"
            )
        _check_dataset(model_dir, old_options.get(DATASET_KEY), options.get(DATASET_KEY))
        changed = {**_changes(old_config, config.to_dict(), free),
                   **_changes(old_options.get(SCHEDULE_KEY) or {}, options.get(SCHEDULE_KEY) or {})}
        if changed:
            _record_changes(model_dir, changed)
    write_json(config_path, config.to_dict())
    write_json(options_path, options)
    return existed


def _changes(old: dict, new: dict, keys: Iterable[str] | None = None) -> dict:
    """{key: [old, new]} for the `keys` (default: those both hold) whose values differ."""
    keys = (set(old) & set(new)) if keys is None else keys
    return {k: [old.get(k), new.get(k)] for k in sorted(keys) if _differences({k: old.get(k)}, {k: new.get(k)})}


def _record_changes(model_dir: str, changed: dict) -> None:
    """One log line, and an entry appended to CHANGES_FILE (rewritten atomically), so the run says which
    epochs trained or validated under which schedule."""
    epochs = [int(m.group(1)) for f in checkpoint_files(model_dir)
              if (m := re.search(r"ckpt-(\d+)\.index$", f))]
    after = max(epochs, default=0)
    path = os.path.join(model_dir, CHANGES_FILE)
    history = []
    if os.path.exists(path):
        try:
            with open(path) as f:
                history = json.load(f)
        except ValueError:
            history = None
        if not isinstance(history, list):  # a record must not stop a resume: keep the bad file aside
            os.replace(path, path + ".damaged")
            logging.warning("%s is not a JSON list; moved to %s.damaged, starting a new one", path, path)
            history = []
    history.append({"after_epoch": after, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": changed})
    write_json(path, history)
    logging.info("resuming %s after epoch %d with changed schedule settings: %s (recorded in %s)", model_dir,
                 after, ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()), path)


def _stale(model_dir: str, what: str) -> ValueError:
    """A run written by an earlier ctl_keras: not resumed (nobody holds such runs; no compatibility path)."""
    return ValueError(f"model_dir {model_dir} holds a run of an earlier ctl_keras ({what}); delete it or "
                      "train into a new --model_dir")


def _check_dataset(model_dir: str, old: dict | None, new: dict) -> None:
    """A run's dataset is part of its identity: resuming on another build would score the test
    AUC on scenes the first epochs trained on. A run recorded without a fingerprint is stale (_stale)."""
    if not old or "fingerprint" not in old:
        raise _stale(model_dir, f"{OPTIONS_FILE} records no dataset fingerprint")
    if old["fingerprint"] == new.get("fingerprint"):
        return
    raise ValueError(
        f"model_dir {model_dir} was trained on dataset {old.get('fingerprint')} ({old.get('data_dir')}), "
        f"but --data_dir {new.get('data_dir')} holds dataset {new.get('fingerprint')}; resume with "
        f"--data_dir={old.get('data_dir')} or use another --model_dir")


class TrainState:
    """Resumable state: head variables, optimizer, finished epoch, best validation result, time.

    Restores from <model_dir>/checkpoints; saves to <save_dir>/checkpoints, which is the model_dir except
    on the non-writing workers of a multi-worker run (they save a copy to a temporary dir: saving takes
    part in the workers' collectives).
    """

    def __init__(self, model_dir: str, variables: list, optimizer, max_to_keep: int = 2,
                 save_dir: str | None = None):
        self.model_dir = model_dir
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_auc = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_auc")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
        self.checkpoint = tf.train.Checkpoint(
            heads=list(variables), optimizer=optimizer, epoch=self.epoch, best_auc=self.best_auc,
            best_epoch=self.best_epoch, train_seconds=self.train_seconds)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(save_dir or model_dir, CHECKPOINT_DIR), max_to_keep=max_to_keep)

    def restore(self) -> int:
        """Restore the last finished epoch, if any; returns it (0 for a fresh run).

        A damaged index file stops the run (never a silent restart over a finished one); a damaged
        newest checkpoint falls back to the previous intact one, with a warning.
        """
        directory = os.path.join(self.model_dir, CHECKPOINT_DIR)
        files = checkpoint_files(self.model_dir)
        start_over = f"to start over, remove {self.model_dir} or pass another --model_dir"
        state = tf.train.get_checkpoint_state(directory)  # None for a missing or unparsable index file
        if state is None or not state.model_checkpoint_path:
            if not files:
                return 0
            raise ValueError(f"{os.path.join(directory, 'checkpoint')} is missing or damaged, so the "
                             f"{len(files)} checkpoint(s) beside it cannot be resumed; {start_over}")
        candidates = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        if state.model_checkpoint_path not in candidates:
            candidates.append(state.model_checkpoint_path)
        reasons = []
        # get_checkpoint_state has already joined the index's relative entries onto `directory`; joining
        # again doubled a relative model_dir (runs/demo/checkpoints/runs/demo/checkpoints/ckpt-40).
        for path in reversed(candidates):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (AssertionError, ValueError) as e:  # another model's: older ones will not match either
                raise ValueError(f"checkpoint {path} does not match this model: {_first_line(e)}") from None
            except (IndexError, OSError, tf.errors.OpError) as e:  # truncated or unreadable files
                reasons.append(f"{os.path.basename(path)}: {type(e).__name__}: {_first_line(e)}")
                continue
            if reasons:
                logging.warning("checkpoint(s) damaged (%s); resuming from the previous intact one, %s",
                                "; ".join(reasons), path)
            return int(self.epoch.numpy())
        raise ValueError(f"no checkpoint in {directory} can be restored ({'; '.join(reasons)}); {start_over}")

    def save(self, epoch: int) -> str:
        """Save epoch `epoch`, durably: TF renames its files into place without fsync, so the new
        ckpt-N files and the `checkpoint` index are fsynced, then the directory (atomic.py)."""
        self.epoch.assign(epoch)
        prefix = self.manager.save(checkpoint_number=epoch)
        directory = os.path.dirname(prefix)
        for path in [*tf.io.gfile.glob(f"{prefix}.*"), os.path.join(directory, "checkpoint")]:
            if "://" not in path and os.path.isfile(path):
                fsync_path(path)
        if "://" not in directory:
            fsync_path(directory)
        return prefix


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
