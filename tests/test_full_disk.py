"""A full disk is one line naming where (issue 23 item 12): build_dataset on a real, tiny tmpfs, and
the two shapes in which Beam re-raises a worker's ENOSPC (in-process and from worker processes)."""

import errno
import os
import subprocess
import sys

import pytest

from ctl_keras import cli


@pytest.mark.parametrize("raised", [
    OSError("[Errno 28] No space left on device [while running 'Write files']"),  # FnApiRunner, in process
    RuntimeError("Traceback (most recent call last):\n  File ...\nRuntimeError: OSError: [Errno 28] No space "
                 "left on device [while running 'Write files']"),  # multi_processing workers
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_full_disk_errors_become_one_line_naming_the_path(raised, tmp_path):
    with pytest.raises(OSError) as err:
        with cli.full_disk_names(tmp_path, "the dataset"):
            raise raised
    line = cli.error_line(err.value)
    assert err.value.errno == errno.ENOSPC and str(tmp_path) in line and "Traceback" not in line


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with cli.full_disk_names(tmp_path):
            raise RuntimeError("boom")


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; the error shapes are tested above")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


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
