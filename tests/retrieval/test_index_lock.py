"""One writer per index stem (STEM.lock): a second writer refuses in one line naming the holder's pid,
a dead holder's lock is taken over, the lock holder removes dead writers' temporary files of its stem
(only those), and a full rebuild continues the generation numbering."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ctl_keras.retrieval import jobs as recommend
from ctl_keras.retrieval.index import CatalogIndex, load_index, save_index
from ctl_keras.retrieval.index_lock import next_generation

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
HOLD = ("import sys, time\nfrom ctl_keras.retrieval.index_lock import index_writer\n"
        "with index_writer(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def _save(directory, n=6):
    emb = np.eye(n, 4, dtype=np.float32) + 0.1
    index = CatalogIndex(np.array([f"p{i}" for i in range(n)]), np.arange(n) % 2,
                         emb / np.linalg.norm(emb, axis=1, keepdims=True), ("a", "b"),
                         {"tower_version": 1}, image_sha256=[f"{i}" for i in range(n)])
    save_index(index, directory / "cat")
    (directory / "ids.txt").write_text("p0\n")


def _remove(cwd):
    """`recommend index --update --remove` run the way a user runs it: relative paths, from the index's dir."""
    return subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "index", "--update", "--index=cat",
                           "--remove=ids.txt"], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.mark.slow
def test_second_writer_refused_naming_the_holder_and_a_dead_holders_lock_taken_over(tmp_path):
    _save(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "cat")], stdout=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = _remove(tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            f"recommend index: error: index cat is being written by another `recommend index` (pid {holder.pid}, "
            "lock cat.lock); not waiting for it: rerun once it has finished")
        assert list(load_index(tmp_path / "cat").product_ids)[0] == "p0"  # untouched
        # a full build refuses too, at its start (before the export, which does not exist, is read)
        with pytest.raises(RuntimeError, match=rf"being written by another `recommend index` \(pid {holder.pid},"):
            recommend.run_index(str(tmp_path / "no-export"), str(tmp_path / "no-products"), str(tmp_path / "cat"))
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, STEM.lock stays with the dead pid in it
        holder.wait()
    assert (tmp_path / "cat.lock").read_text() == str(holder.pid)
    proc = _remove(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generation 2: +0 new" in proc.stdout and "-1 removed" in proc.stdout
    assert "p0" not in load_index(tmp_path / "cat").product_ids
    assert not (tmp_path / "cat.lock").exists()  # a writer that ends removes its lock file


@pytest.mark.slow
def test_writer_removes_dead_writers_temp_files_of_its_stem_only(tmp_path):
    """A killed write leaves a catalog-sized `.tmp-<pid>-<hex>-cat.g<N>.npz`; the next writer removes
    those of dead pids for its stem, and keeps a live pid's, another stem's and other names."""
    _save(tmp_path)
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        gone = [f".tmp-{dead}-0123abcd-cat.g3.npz", f".tmp-{dead}-89abcdef-cat.json",
                f".tmp-{dead}-0123abcd-cat.g3.ann.npz"]
        kept = [f".tmp-{live.pid}-0123abcd-cat.g3.npz", f".tmp-{dead}-0123abcd-catalog.g2.npz",
                f".tmp-{dead}-0123abcd-other.npz", f".tmp-{dead}-0123abcd-cat.npz.bak", "cat.g3.npz.mine"]
        for name in gone + kept:
            (tmp_path / name).write_bytes(b"\0" * (1 << 20))
        proc = _remove(tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        names = {p.name for p in tmp_path.iterdir()}
        assert not names & set(gone) and set(kept) <= names
    finally:
        live.kill()
        live.wait()


def test_rebuild_generation_continues_the_numbering(tmp_path):
    stem = tmp_path / "cat"
    assert next_generation(stem) == 1
    _save(tmp_path)
    assert next_generation(stem) == 2  # STEM.json says 1
    (tmp_path / "cat.g7.npz").write_bytes(b"")  # a later generation's file left on disk counts too
    assert next_generation(stem) == 8
    (tmp_path / "cat.g7.npz").unlink()
    (tmp_path / "cat.json").write_text("{not json")
    assert next_generation(stem) == 2  # STEM.npz alone: generation 1
