"""Export versions: only a complete SavedModel is a version, and a rerun
removes the staging dirs of exporters that were killed (item 13, export side) and nothing else."""

import os
import subprocess
import sys

from ctl_keras.savedmodel import versions


def _complete(path):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"\x08\x01")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_version_dir_without_a_saved_model_is_not_a_version(tmp_path):
    """`99/catalog` (an index written inside the export) must not make the next export 100."""
    _complete(tmp_path / "scene_tower" / "1")
    _complete(tmp_path / "product_tower" / "1")
    os.makedirs(tmp_path / "scene_tower" / "99" / "catalog")
    assert versions.existing_versions(str(tmp_path / "scene_tower")) == [1]
    assert versions.latest_version(str(tmp_path / "scene_tower")) == 1
    assert versions.next_version(str(tmp_path), ["scene_tower", "product_tower"]) == 2


def test_next_version_steps_over_a_number_whose_dir_exists_incomplete(tmp_path):
    _complete(tmp_path / "scene_tower" / "1")
    os.makedirs(tmp_path / "product_tower" / "2")  # not a version, but its name is taken
    assert versions.next_version(str(tmp_path), ["scene_tower", "product_tower"]) == 3


def test_a_rerun_removes_staging_dirs_of_dead_exporters_only(tmp_path):
    base = tmp_path / "scene_tower"
    dead = base / f".tmp-2-{_dead_pid()}"
    (dead / "variables").mkdir(parents=True)
    (dead / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 1000)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = base / f".tmp-2-{sleeper.pid}"  # another exporter still running
        alive.mkdir()
        users = [base / ".tmp-notes", base / ".tmp-x-1"]
        for path in users:
            path.mkdir()
        with versions.staged_versions(str(tmp_path), ["scene_tower"]) as (v, staging):
            _complete(staging["scene_tower"])
        assert v == 1 and versions.existing_versions(str(base)) == [1]
        assert not dead.exists()
        assert alive.exists() and all(p.exists() for p in users)
    finally:
        sleeper.kill()
        sleeper.wait()
