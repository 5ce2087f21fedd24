"""One build per dataset directory: a second build refuses in one line naming the holder's pid, two
builds started together leave a complete dataset, a killed build's lock and staging are taken over,
and staging cleanup removes only the staging directories of processes that are gone."""

import os
import signal
import subprocess
import sys
import time

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# The command of the README, run from the test's directory with a relative --out.
BUILD = [sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=synthetic", "--smoke", "--out=D", "--workers=1"]


def snapshot(directory):
    """The dataset's files (not the lock file of a build in progress)."""
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, name)) and name != ".build.lock"}


def leftovers(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith((".staging-", ".build", ".tmp-")))


def errors(stderr):
    return [line for line in stderr.splitlines() if line.startswith("build_dataset: error:")]


def wait_for(condition, process, timeout=120):
    start = time.time()
    while not condition():
        assert process.poll() is None, "the build ended before the awaited moment: nothing was tested"
        assert time.time() - start < timeout
        time.sleep(0.005)


def holds_lock(path, pid):
    try:
        with open(path) as f:
            return f.read().strip() == str(pid)
    except OSError:
        return False


@pytest.fixture
def built(tmp_path):
    """tmp_path holding D, a complete smoke build; returns D's files."""
    subprocess.run(BUILD, cwd=tmp_path, env=ENV, capture_output=True, check=True, timeout=300)
    return snapshot(tmp_path / "D")


@pytest.mark.slow
def test_second_build_refuses_naming_the_holder_and_the_dataset_survives(tmp_path, built):
    """The first build is stopped (SIGSTOP) right after it takes the lock, so the second surely starts
    while it writes; the second must not touch the directory. Before the lock, the finishing build
    removed the other's staging and the swaps interleaved: shards but no manifest.json."""
    out = tmp_path / "D"
    first = subprocess.Popen(BUILD, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: holds_lock(out / ".build.lock", first.pid), first)
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(BUILD, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
        assert errors(second.stderr) == [f"build_dataset: error: another build (pid {first.pid}) is writing D; "
                                         "wait for it or choose another --out"], second.stderr[-3000:]
        assert snapshot(out) == built
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0 and "built synthetic" in stdout, stderr[-3000:]
    assert snapshot(out) == built and leftovers(out) == []


@pytest.mark.slow
def test_two_builds_started_together_leave_the_dataset_complete(tmp_path, built):
    """Each build either finishes or refuses in one line naming the other; the dataset is whole
    afterwards (the same seed gives the same bytes) and nothing is left behind."""
    out = tmp_path / "D"
    for _ in range(2):
        procs = [subprocess.Popen(BUILD, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        results = [p.communicate(timeout=300) for p in procs]
        for (proc, (stdout, stderr)), other in zip(zip(procs, results), reversed(procs)):
            if proc.returncode == 0:
                assert "built synthetic" in stdout
            else:
                assert errors(stderr) == [f"build_dataset: error: another build (pid {other.pid}) is writing D; "
                                          "wait for it or choose another --out"], stderr[-3000:]
        assert 0 in [p.returncode for p in procs]
        assert snapshot(out) == built and leftovers(out) == []


@pytest.mark.slow
def test_a_killed_builds_lock_and_staging_are_taken_over(tmp_path, built):
    """SIGKILL leaves .build.lock (with the dead pid) and a staging directory; the next build takes the
    lock over (the kernel dropped the flock), removes that staging and finishes."""
    out = tmp_path / "D"
    first = subprocess.Popen(BUILD, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(n.startswith(".staging-") for n in os.listdir(out)), first)
    first.kill()
    first.wait()
    assert holds_lock(out / ".build.lock", first.pid) and leftovers(out)
    rerun = subprocess.run(BUILD, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert snapshot(out) == built and leftovers(out) == []


OWNER = """
import sys, time
from ctl_keras.builder import swap
print(swap.new_staging(sys.argv[1]), flush=True)
time.sleep(300)
"""


@pytest.mark.slow
def test_staging_cleanup_removes_only_dead_owners_directories(tmp_path):
    """A live process's staging directory is kept; once that process is gone (SIGKILL: no clean-up of
    its own), the next clean-up removes it. A marked directory nobody holds goes at once."""
    from ctl_keras.builder import swap

    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        live = owner.stdout.readline().strip()
        assert os.path.isdir(live), live
        dead = tmp_path / ".staging-killed"
        dead.mkdir()
        (dead / swap.MARKER).write_bytes(b"")
        swap.remove_abandoned_staging(str(tmp_path))
        assert os.path.isdir(live) and not dead.exists()
    finally:
        owner.kill()
        owner.wait()
    swap.remove_abandoned_staging(str(tmp_path))
    assert not os.path.exists(live) and os.listdir(tmp_path) == []
