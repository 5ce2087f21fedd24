"""Real processes: SIGKILL mid-run then rerun == uninterrupted run; a second concurrent run refuses."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ctl_keras.training.checkpointing import ModelDirLock
from tests.helpers.run_files import latest_epoch, weight_arrays


def _command(data_dir, model_dir, epochs):
    return [sys.executable, "-m", "ctl_keras.train", "--dataset=synthetic", "--smoke", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", f"--epochs={epochs}", "--feature_cache"]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(command):
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done




@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(feature_run, tmp_path):
    """Kill after epoch >= 1 is checkpointed, rerun: the same head weights (dropout on) and AUCs as the
    uninterrupted feature_run of the same config, which ran in the test process."""
    _, data_dir, straight, results = feature_run
    epochs = results["epochs_run"]
    killed = str(tmp_path / "killed")

    proc = subprocess.Popen(_command(data_dir, killed, epochs), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while latest_epoch(killed) < 1:
            assert proc.poll() is None, "training ended before its first checkpoint"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    killed_at = latest_epoch(killed)
    assert 1 <= killed_at < epochs, killed_at  # the rerun below has epochs left to train
    assert not os.path.exists(os.path.join(killed, "results.json"))

    resumed = _run(_command(data_dir, killed, epochs))
    assert f"resuming {killed} after epoch" in resumed.stderr
    a, b = weight_arrays(os.path.join(straight, "last.weights.h5")), weight_arrays(os.path.join(killed, "last.weights.h5"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    with open(os.path.join(straight, "results.json")) as f:
        r_straight = json.load(f)
    with open(os.path.join(killed, "results.json")) as f:
        r_killed = json.load(f)
    for key in ("val_auc", "test_auc", "best_epoch", "epochs_run"):
        assert r_straight[key] == r_killed[key], key


@pytest.mark.slow
def test_second_concurrent_run_refuses(feature_run, tmp_path):
    """While another process holds <model_dir>/.lock, the CLI exits 1 with one line naming the dir."""
    _, data_dir, _, _ = feature_run
    model_dir = str(tmp_path / "busy")
    with ModelDirLock(model_dir):
        done = subprocess.run(_command(data_dir, model_dir, 1), env=_env(), capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 1
    message = [line for line in done.stderr.splitlines() if line.startswith("train: error:")]
    assert len(message) == 1 and f"model_dir {model_dir} is in use by another training run" in message[0]
    assert f"(pid {os.getpid()})" in message[0]
    assert "Traceback" not in done.stderr
    assert not os.path.exists(os.path.join(model_dir, "config.json"))
