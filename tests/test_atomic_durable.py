"""Durable writes: the file is fsynced before it is renamed into place and its
directory after, for atomic.py's writers and the callers that rename by themselves (checkpoints,
export versions, the builder's files). os.fsync is observed, not replaced: every call still happens."""

import os

import pytest

from ctl_keras.utils import atomic


@pytest.fixture
def journal(monkeypatch):
    """('fsync', inode, kind) and ('rename', inode of the source) events, in call order."""
    events = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, "dir" if os.path.stat.S_ISDIR(st.st_mode) else "file"))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("rename", os.stat(src).st_ino))
        return real_replace(src, dst, *a, **k)

    def rename(src, dst, *a, **k):
        events.append(("rename", os.stat(src).st_ino))
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    return events


def _synced_before_rename(events, path):
    ino = os.stat(path).st_ino
    synced = [i for i, e in enumerate(events) if e[:2] == ("fsync", ino)]
    renamed = [i for i, e in enumerate(events) if e == ("rename", ino)]
    assert synced and renamed and synced[0] < renamed[-1], (path, events)
    return renamed[-1]


def _dir_synced_after(events, directory, index):
    ino = os.stat(directory).st_ino
    assert any(e == ("fsync", ino, "dir") for e in events[index + 1:]), (directory, events)


def test_write_json_fsyncs_the_file_then_the_directory(tmp_path, journal):
    path = tmp_path / "results.json"
    atomic.write_json(path, {"auc": 0.9})
    _dir_synced_after(journal, tmp_path, _synced_before_rename(journal, path))


def test_durable_false_skips_fsync(tmp_path, journal):
    atomic.write_bytes(tmp_path / "x.jpg", b"\xff\xd8\xff", durable=False)
    assert not [e for e in journal if e[0] == "fsync"]


def test_staged_files_fsync_every_file_before_the_switch(tmp_path, journal):
    with atomic.staged_files(tmp_path / "index.npz", tmp_path / "index.json") as (a, b):
        for tmp in (a, b):
            with open(tmp, "w") as f:
                f.write("x")
    npz = _synced_before_rename(journal, tmp_path / "index.npz")
    last = _synced_before_rename(journal, tmp_path / "index.json")
    assert npz < last
    _dir_synced_after(journal, tmp_path, last)


def test_publish_dir_fsyncs_the_tree(tmp_path, journal):
    built = tmp_path / "built"
    (built / "sub").mkdir(parents=True)
    (built / "sub" / "shard").write_bytes(b"1234")
    atomic.publish_dir(built, tmp_path / "cache")
    ino = os.stat(tmp_path / "cache" / "sub" / "shard").st_ino
    assert ("fsync", ino, "file") in journal
    _dir_synced_after(journal, tmp_path, _synced_before_rename(journal, tmp_path / "cache"))


def test_export_version_is_fsynced_before_it_appears(tmp_path, journal):
    from ctl_keras.savedmodel import versions

    with versions.staged_versions(str(tmp_path), ["scene_tower"]) as (v, staging):
        os.makedirs(os.path.join(staging["scene_tower"], "assets.extra"))
        atomic.write_json(os.path.join(staging["scene_tower"], "assets.extra", "ctl_export.json"), {"v": v})
        with open(os.path.join(staging["scene_tower"], "saved_model.pb"), "wb") as f:
            f.write(b"\x08\x01")
    final = tmp_path / "scene_tower" / "1"
    renamed = _synced_before_rename(journal, final)
    pb = os.stat(final / "saved_model.pb").st_ino
    assert any(e[:2] == ("fsync", pb) for e in journal[:renamed])  # the tree, before the dir's rename
    _dir_synced_after(journal, tmp_path / "scene_tower", renamed)


def test_checkpoint_files_and_index_are_fsynced(tmp_path, journal):
    import tensorflow as tf

    from ctl_keras.training.checkpointing import TrainState

    state = TrainState(str(tmp_path), [tf.Variable([1.0, 2.0])], tf.keras.optimizers.SGD())
    prefix = state.save(1)
    inodes = {e[1] for e in journal if e[0] == "fsync"}
    for path in [prefix + ".index", os.path.join(tmp_path, "checkpoints", "checkpoint"),
                 *tf.io.gfile.glob(prefix + ".data-*")]:
        assert os.stat(path).st_ino in inodes, path
    assert os.stat(tmp_path / "checkpoints").st_ino in inodes


def test_builder_files_are_fsynced_before_their_rename(tmp_path, journal):
    from ctl_keras.builder import files

    path = str(tmp_path / "manifest.json")
    files.write_bytes(path, b"{}")
    assert os.stat(path).st_ino in {e[1] for e in journal if e[0] == "fsync"}
    assert os.stat(tmp_path).st_ino in {e[1] for e in journal if e[:3:2] == ("fsync", "dir")}
