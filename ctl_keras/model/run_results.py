"""<model_dir>/results.json: the run's honest numbers, with the config and code version behind them."""

from __future__ import annotations

import json
import os
import subprocess

from ctl_keras.config import Config
from ctl_keras.utils.atomic import write_json

RESULTS_FILE = "results.json"


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
