"""atomic.py's multi-file and directory shapes: rename order, what an error leaves behind."""

import os

import pytest

from ctl_keras.utils import atomic


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


def test_staged_files_renames_in_order_and_leaves_no_temporaries(tmp_path):
    data, meta = tmp_path / "x.npz", tmp_path / "x.json"
    _write(meta, "old json")
    with atomic.staged_files(data, meta) as (tmp_data, tmp_meta):
        _write(tmp_data, "new data")
        _write(tmp_meta, "new json")
        assert os.path.dirname(tmp_data) == str(tmp_path) and atomic.is_temp_name(os.path.basename(tmp_meta))
        assert _read(meta) == "old json" and not data.exists()  # nothing published inside the block
    assert (_read(data), _read(meta)) == ("new data", "new json")
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.npz"]


def test_staged_files_publishes_nothing_on_an_exception(tmp_path):
    data, meta = tmp_path / "x.npz", tmp_path / "x.json"
    _write(meta, "old json")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.staged_files(data, meta) as (tmp_data, tmp_meta):
            _write(tmp_data, "new data")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["x.json"] and _read(meta) == "old json"


def test_staged_files_a_failed_later_rename_keeps_the_old_switch_file(tmp_path):
    """The first file is renamed, the last (the switch) cannot be: it stays the old one, no temporaries."""
    data, switch = tmp_path / "x.npz", tmp_path / "x.json"
    switch.mkdir()
    (switch / "keep").write_text("a directory cannot be replaced by a file")
    with pytest.raises(OSError):
        with atomic.staged_files(data, switch) as (tmp_data, tmp_switch):
            _write(tmp_data, "new data")
            _write(tmp_switch, "new json")
    assert _read(data) == "new data" and os.listdir(switch) == ["keep"]
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.npz"]


def test_publish_dir_creates_and_replaces(tmp_path):
    final = tmp_path / "cache"
    for generation in ("first", "second"):
        built = tmp_path / f"cache.tmp-{generation}"
        built.mkdir()
        (built / "manifest.json").write_text(generation)
        atomic.publish_dir(built, final)
        assert (final / "manifest.json").read_text() == generation
        assert sorted(os.listdir(tmp_path)) == ["cache"]  # no .tmp-* or .old-* left


def test_exclusive_lock_removed_on_exit_and_a_dead_holders_file_taken_over(tmp_path):
    """remove_on_exit (the dataset build's lock): the file goes with the lock; while held, a second
    taker is refused with the holder's pid; a file left by a killed holder (its pid, no flock) is taken
    over. Without it (a model_dir's .lock) the file stays."""
    path = tmp_path / "d" / ".build.lock"
    refuse = lambda holder: RuntimeError(f"held by {holder}")
    with atomic.ExclusiveLock(path, refuse, remove_on_exit=True):
        assert path.read_text() == str(os.getpid())
        with pytest.raises(RuntimeError, match=rf"^held by {os.getpid()}$"):
            with atomic.ExclusiveLock(path, refuse, remove_on_exit=True):
                pass
    assert os.listdir(tmp_path / "d") == []
    path.write_text("999999999")  # what a SIGKILLed holder leaves: its pid, and no lock (the kernel dropped it)
    with atomic.ExclusiveLock(path, refuse, remove_on_exit=True):
        assert path.read_text() == str(os.getpid())
    assert not path.exists()
    with atomic.ExclusiveLock(path, refuse):
        pass
    assert path.read_text() == str(os.getpid())


_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(0.3)  # the window between a holder's flock and its pid write, widened
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
time.sleep(30)
"""


@pytest.mark.parametrize("left_behind", ["", "999999999"])
def test_exclusive_lock_names_a_holder_that_has_not_written_its_pid_yet(tmp_path, left_behind):
    """A taker that loses the race by a moment finds the file empty (or a dead predecessor's pid): it
    waits for the live holder's pid instead of naming "?" or the dead one."""
    import subprocess
    import sys

    path = tmp_path / "index.lock"
    path.write_text(left_behind)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"^held by {holder.pid}$"):
            with atomic.ExclusiveLock(path, lambda pid: RuntimeError(f"held by {pid}")):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_pid_alive():
    from ctl_keras.utils.process import pid_alive

    assert pid_alive(os.getpid())
    assert not pid_alive(999999999) and not pid_alive(0) and not pid_alive(-1)
