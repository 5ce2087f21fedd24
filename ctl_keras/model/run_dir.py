"""A run directory (`ctl train --model_dir`): its file names, and reading a trained run back.

    config.json            the Config (checked on resume)       train_options.json  run options that change weights
    config_changes.json    what resumes changed                  .lock               one training run at a time
    checkpoints/ckpt-*     resumable state (every epoch)         tensorboard/        scalars, projector
    last.weights.h5        heads after the last epoch            best.weights.h5     heads at the best validation AUC
    results.json           the run's honest numbers              eval.json           `ctl evaluate`'s default output

Every module that reads or writes one of these takes its name from here; writing the resumable state
is training/checkpointing.py's job, loading a trained run (config + heads) is this module's.
"""

from __future__ import annotations

import json
import os
import subprocess

from ctl_keras.config import Config
from ctl_keras.utils.atomic import write_json

CONFIG_FILE = "config.json"
OPTIONS_FILE = "train_options.json"
CHANGES_FILE = "config_changes.json"
LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
RESULTS_FILE = "results.json"
EVAL_FILE = "eval.json"
WHICH = ("best", "last")
_TRAIN_HINT = "train one with `ctl train --dataset=NAME --model_dir=DIR`"


def weights_file(which: str) -> str:
    """The head weights' file name: best.weights.h5 or last.weights.h5."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    return f"{which}.weights.h5"


def read_config(model_dir: str) -> Config:
    """The Config stored in <model_dir>/config.json."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model_dir {model_dir} does not exist; {_TRAIN_HINT}")
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing, so {model_dir} is not a trained model_dir; {_TRAIN_HINT}")
    try:
        with open(path) as f:
            values = json.load(f)
        return Config.from_dict(values)
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"{path} is not a valid ctl_keras config: {reason}") from None


def load_trained(model_dir: str, backbone_weights: str | None = None, which: str = "best"):
    """(config, models) with the head weights of <model_dir>/{best|last}.weights.h5 loaded.

    `backbone_weights` overrides the config's (e.g. "none" on a machine without the ImageNet file).
    """
    from ctl_keras.model.ctl import build_ctl  # noqa: PLC0415 (TensorFlow: only when a model is built)

    weights_path = os.path.join(os.fspath(model_dir), weights_file(which))
    config = read_config(model_dir)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"{weights_path} is missing; {_TRAIN_HINT} (best is written at the first validation, "
            f"last after each epoch)"
        )
    if backbone_weights is not None:
        from ctl_keras.config import check_backbone_weights  # noqa: PLC0415

        check_backbone_weights(backbone_weights)
        config = config.replace(backbone_weights=backbone_weights)
    models = build_ctl(config)
    models.load_heads(weights_path)
    return config, models


def read_results(model_dir: str) -> dict:
    """<model_dir>/results.json, or {} when training has not finished there."""
    path = os.path.join(model_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def run_data_dir(model_dir: str, dataset: str, data_dir: str | None = None) -> str:
    """The dataset of a run: `data_dir` if given, else the one results.json records, else train's
    default tf_records/<dataset>."""
    return data_dir or read_results(model_dir).get("data_dir") or os.path.join("tf_records", dataset)


def git_commit() -> str | None:
    """HEAD of the repository holding this package, or None outside a git checkout / without git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit or None


def write_results(model_dir: str, config: Config, *, val_auc: float, test_auc: float, best_epoch: int,
                  epochs_run: int, train_seconds: float, extra: dict | None = None) -> dict:
    """Write results.json atomically and return its content."""
    values = {
        "dataset": config.dataset,
        "variant": config.variant,
        "val_auc": float(val_auc),
        "test_auc": float(test_auc),
        "best_epoch": int(best_epoch),
        "epochs_run": int(epochs_run),
        "train_seconds": round(float(train_seconds), 3),
        "config": config.to_dict(),
        "git_commit": git_commit(),
        **(extra or {}),
    }
    write_json(os.path.join(model_dir, RESULTS_FILE), values)
    return values
