"""A full disk is one line naming where: build_dataset (Beam's writes, the synthetic generation) and
experiments (feature caches, results) on real, tiny tmpfs mounts, and the two shapes in which Beam
re-raises a worker's ENOSPC (in-process and from worker processes)."""

import contextlib
import errno
import json
import os
import subprocess
import sys

import pytest

from ctl_keras import cli
from ctl_keras.utils import atomic


@pytest.mark.parametrize("raised", [
    OSError("[Errno 28] No space left on device [while running 'Write files']"),  # FnApiRunner, in process
    RuntimeError("Traceback (most recent call last):\n  File ...\nRuntimeError: OSError: [Errno 28] No space "
                 "left on device [while running 'Write files']"),  # multi_processing workers
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_full_disk_errors_become_one_line_naming_the_path(raised, tmp_path):
    with pytest.raises(OSError) as err:
        with atomic.full_disk_names(tmp_path, "the dataset"):
            raise raised
    line = cli.error_line(err.value)
    assert err.value.errno == errno.ENOSPC and str(tmp_path) in line and "Traceback" not in line


def test_the_innermost_block_names_the_place(tmp_path):
    """experiments writes its results under --out, but a feature cache under --feature_cache_root and a
    generated dataset under --data_dir: the block that knows the directory names it."""
    with pytest.raises(OSError) as err:
        with atomic.full_disk_names(tmp_path / "out", "the experiments"):
            with atomic.full_disk_names(tmp_path / "cache", "a feature cache"):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert f"while writing a feature cache under {tmp_path / 'cache'};" in cli.error_line(err.value)


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.full_disk_names(tmp_path):
            raise RuntimeError("boom")


@contextlib.contextmanager
def mounted_tmpfs(mount, size):
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; the error shapes are tested above")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def tiny_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "full", "256k") as mount:
        yield mount


@pytest.mark.slow
def test_build_dataset_on_a_full_disk_is_one_line(synthetic_data, tiny_disk):
    """The synthetic raw files (a few MB of images) do not fit in 256 kB: ENOSPC while writing shards."""
    _, data_dir = synthetic_data
    raw = os.path.join(data_dir, "raw")
    out = tiny_disk / "ds"
    proc = subprocess.run(
        [sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=synthetic", f"--pairs={raw}/pairs.json",
         f"--categories={raw}/categories.json", f"--images_dir={raw}/images", f"--out={out}", "--workers=1"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert errors == [f"build_dataset: error: [Errno 28] No space left on device while writing the dataset (the "
                      f"previous one, if any, is unchanged) under {out}; free space there or choose another "
                      "location"], proc.stderr[-3000:]
    assert os.listdir(tiny_disk) == []  # the staging dir is gone, nothing half-written


ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _error_lines(proc):
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if "error:" in line]


@pytest.mark.slow
def test_generating_the_synthetic_set_on_a_full_disk_is_one_line(tiny_disk):
    """The generated images (about 600 kB at --smoke) do not fit in 256 kB. Run from the disk with a
    relative --out; a new directory's half-written raw/ is removed."""
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=synthetic", "--smoke",
                           "--out=ds"], cwd=tiny_disk, capture_output=True, text=True, timeout=600, env=ENV)
    assert _error_lines(proc) == [
        "build_dataset: error: [Errno 28] No space left on device while writing the generated images (the built "
        "dataset, if any, is unchanged) under ds/raw; free space there or choose another location"]
    assert os.listdir(tiny_disk) == []


def _experiments(data_dir, cwd, *flags):
    return subprocess.run([sys.executable, "-m", "ctl_keras.experiments", f"--data_dir={data_dir}", "--smoke",
                           "--methods=random", "--scenes=cropped", "--seeds=0", *flags],
                          cwd=cwd, capture_output=True, text=True, timeout=900, env=ENV)


@pytest.mark.slow
def test_experiments_full_disk_names_the_feature_cache_directory(synthetic_data, tiny_disk, tmp_path):
    """The feature cache's memmaps (about 2 MB here) on a 256 kB disk: was a SIGBUS crash (a page of a
    sparse memmap written on a full disk), now one line naming the cache root; nothing is left there."""
    _, data_dir = synthetic_data
    proc = _experiments(data_dir, tmp_path, "--out=exp", "--feature_cache_root=full/cache")
    assert _error_lines(proc) == [
        "experiments: error: [Errno 28] No space left on device while writing a feature cache (a previous one "
        "there, if any, is unchanged) under full/cache; free space there or choose another location"]
    assert os.listdir(tiny_disk / "cache") == []


@pytest.mark.slow
def test_experiments_full_disk_names_the_out_directory(synthetic_data, tmp_path):
    """The random baseline's files (about 115 kB: eval.json, table, plots) on a 64 kB disk: one line
    naming --out; the run finished before the disk filled is kept (rerun resumes from it)."""
    _, data_dir = synthetic_data
    with mounted_tmpfs(tmp_path / "small", "64k"):
        proc = _experiments(data_dir, tmp_path, "--out=small/exp", "--feature_cache_root=cache")
        assert _error_lines(proc) == [
            "experiments: error: [Errno 28] No space left on device while writing the experiments (finished runs "
            "are kept: rerun the same command to resume) under small/exp; free space there or choose another "
            "location"]
        assert json.load(open(tmp_path / "small/exp/cropped/random/seed0/eval.json"))["method"] == "random"
        assert not [n for _, _, names in os.walk(tmp_path / "small") for n in names if n.startswith(".tmp-")]
