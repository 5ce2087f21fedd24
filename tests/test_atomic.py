"""atomic.py's multi-file and directory shapes: rename order, what an error leaves behind."""

import os

import pytest

from ctl_keras import atomic


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
