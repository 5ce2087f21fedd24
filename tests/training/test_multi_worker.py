"""Multi-worker training with real processes on loopback ports (TF_CONFIG, MultiWorkerMirroredStrategy).

Two workers with one CPU replica each and global batch 8 must train the same heads as one process with
global batch 8; only worker 0 writes into model_dir; a SIGKILLed worker stops the other with one line,
and rerunning both resumes. Dropout is 0 for the comparison: each replica draws its own mask by design.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ctl_keras.training import loop
from tests.helpers.run_files import latest_epoch, weight_arrays


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start(ports, index, data_dir, model_dir, tmpdir, *flags):
    command = [sys.executable, "-m", "ctl_keras.train", "--strategy=multi_worker", "--smoke",
               f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--feature_cache", *flags]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": _tf_config(ports, index), "TMPDIR": str(tmpdir)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_workers(data_dir, model_dir, tmpdir, *flags, timeout=900):
    ports = _free_ports(2)
    procs = [_start(ports, i, data_dir, model_dir, tmpdir, *flags) for i in range(2)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    return procs, [err for _, err in outs]


def _worker_dirs(tmpdir):
    """The non-writing workers' temporary out_dirs (TensorFlow's autograph files are not ours)."""
    return [name for name in os.listdir(tmpdir) if name.startswith("ctl_keras-")]




@pytest.mark.slow
def test_two_workers_train_the_same_heads_as_one(feature_run, tmp_path):
    """2 epochs; a fresh --feature_cache_dir, so worker 0 builds the feature cache while worker 1 waits for it."""
    config, data_dir, _, _ = feature_run
    model_dir, cache_dir, tmpdir = tmp_path / "two", tmp_path / "cache", tmp_path / "tmp"
    tmpdir.mkdir()
    procs, errs = _run_workers(data_dir, model_dir, tmpdir, "--epochs=2", "--dropout=0",
                               f"--feature_cache_dir={cache_dir}")
    for proc, err in zip(procs, errs):
        assert proc.returncode == 0, err[-3000:]
    assert "feature cache: train split" in errs[0] and "feature cache: train split" not in errs[1]
    assert f"waiting for another worker to build {cache_dir}" in errs[1]
    assert not os.path.exists(f"{cache_dir}.building")

    # Only worker 0 wrote into model_dir: it held the lock, and worker 1's copies are gone.
    assert (model_dir / ".lock").read_text() == str(procs[0].pid)
    assert _worker_dirs(tmpdir) == []
    with open(model_dir / "results.json") as f:
        results = json.load(f)
    assert results["workers"] == 2 and results["replicas"] == 2 and results["strategy"] == "multi_worker"

    one = config.replace(epochs=2, dropout=0.0)
    loop.train(one, loop.RunOptions(data_dir=data_dir, model_dir=str(tmp_path / "one"), strategy="one_device",
                                    feature_cache=True, feature_cache_dir=str(cache_dir)))
    a, b = weight_arrays(tmp_path / "one" / "last.weights.h5"), weight_arrays(model_dir / "last.weights.h5")
    assert a.keys() == b.keys() and len(a) > 0
    # Trained weights: the tolerances of test_multi_replica.py (the bias before each BatchNorm gets float
    # noise that Adam turns into steps of about lr). The BatchNorm moving mean/variance (vars/2, vars/3) are
    # running sums of 38 steps' batch statistics of pre-activations up to ~20 in size, which the two runs
    # reduce in another float order: measured up to 0.9e-3 of each vector's largest entry; bound 2e-3.
    for name in a:
        if name.endswith(("batch_norm/vars/2", "batch_norm/vars/3")):
            np.testing.assert_allclose(a[name], b[name], rtol=0, atol=2e-3 * np.abs(a[name]).max(), err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-3, err_msg=name)
    assert any(name.endswith("batch_norm/vars/2") and np.abs(a[name]).max() > 1e-3 for name in a)
    with open(tmp_path / "one" / "results.json") as f:
        single = json.load(f)
    with open(os.path.join(data_dir, "manifest.json")) as f:
        questions = json.load(f)["splits"]["val"]["questions"]
    assert abs(results["val_auc"] - single["val_auc"]) <= 1 / questions  # one question may flip at most


@pytest.mark.slow
def test_killed_worker_stops_the_other_and_both_resume(feature_run, tmp_path):
    """SIGKILL worker 1 after epoch 1 is checkpointed: worker 0 exits with one line within bounded time;
    rerunning both resumes after the last finished epoch and finishes."""
    _, data_dir, _, _ = feature_run
    model_dir, tmpdir = str(tmp_path / "run"), tmp_path / "tmp"
    tmpdir.mkdir()
    ports = _free_ports(2)
    procs = [_start(ports, i, data_dir, model_dir, tmpdir, "--epochs=3", "--worker_timeout=120") for i in range(2)]
    try:
        while latest_epoch(model_dir) < 1:
            assert all(p.poll() is None for p in procs), "a worker ended before the first checkpoint"
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)
        _, err = procs[0].communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert procs[0].returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, err[-3000:]
    assert "lost contact with the other workers" in errors[0] and "rerun every worker's command" in errors[0]
    assert "Traceback" not in err
    killed_at = latest_epoch(model_dir)
    assert 1 <= killed_at < 3 and not os.path.exists(os.path.join(model_dir, "results.json"))
    assert len(_worker_dirs(tmpdir)) == 1  # SIGKILL gave worker 1 no chance to remove its copies

    procs, errs = _run_workers(data_dir, model_dir, tmpdir, "--epochs=3", "--worker_timeout=120")
    for proc, err in zip(procs, errs):
        assert proc.returncode == 0, err[-3000:]
    assert f"resuming {model_dir} after epoch {killed_at}" in errs[0]
    with open(os.path.join(model_dir, "results.json")) as f:
        results = json.load(f)
    assert results["epochs_run"] == 3 and results["workers"] == 2
    assert _worker_dirs(tmpdir) == []  # also the one the SIGKILLed worker left


@pytest.mark.slow
def test_unreachable_workers_give_a_clear_error_in_bounded_time(feature_run, tmp_path):
    """Worker 0 of a 2-worker TF_CONFIG whose worker 1 never starts: one line after --worker_timeout."""
    _, data_dir, _, _ = feature_run
    model_dir = tmp_path / "alone"
    proc = _start(_free_ports(2), 0, data_dir, model_dir, tmp_path, "--worker_timeout=5")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("train: error:")]
    assert errors == ["train: error: worker 0: the other workers of TF_CONFIG did not all connect within 5 s "
                      "(--worker_timeout); start every worker and check their addresses and ports"]
    assert not model_dir.exists()
