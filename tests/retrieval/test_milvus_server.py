"""The Milvus backend against a real Milvus server (`--milvus_uri`), the way a 10M-100M catalog is served:
Milvus 2.3.5 standalone (the `milvus` package's embedded server: the same Go/C++ binary as a cluster's
nodes, with its own etcd and local storage), started in its own process on free loopback ports.
`make install` puts it in .venv-milvus (it pins its own dependencies, so it gets a venv of its own).
Checked: FLAT equals exact numpy through the index json (uri recorded, no token), HNSW recall, and
`recommend index --update`'s deletes and upserts, read back by a fresh process-level load."""

import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the [milvus] extra (pymilvus) is not installed")

from ctl_keras.retrieval.search import Searcher, load  # noqa: E402
from ctl_keras.retrieval.update import update_index  # noqa: E402

from test_milvus import _build, _index  # noqa: E402  (pytest puts this folder on sys.path, as for tests/serving's helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.environ.get("CTL_MILVUS_SERVER", os.path.join(ROOT, ".venv-milvus", "bin", "milvus-server"))
PORT_FLAGS = ("etcd", "root-coord", "proxy", "proxy-internal", "query-coord", "query-node", "index-coord",
              "index-node", "data-coord", "data-node")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory):
    if not os.path.exists(SERVER):
        pytest.skip(f"no Milvus server at {SERVER} (`make install` installs it; or set CTL_MILVUS_SERVER)")
    data = tmp_path_factory.mktemp("milvus_server")
    ports = {name: _free_port() for name in PORT_FLAGS}  # its etcd peer (2380) and metrics (9091) ports are fixed
    args = [SERVER, "--data", str(data)] + [a for name, port in ports.items() for a in (f"--{name}-port", str(port))]
    log = open(data / "server.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{ports['proxy']}"
    try:
        _wait_ready(proc, uri, data)
    except BaseException:
        _stop(proc)
        raise
    yield uri
    _stop(proc)
    log.close()
    shutil.rmtree(data, ignore_errors=True)


def _wait_ready(proc, uri, data, seconds=180):
    from pymilvus import MilvusClient

    def logs():
        path = data / "logs" / "milvus-stderr.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, f"milvus-server exited {proc.returncode}: {logs()}"
        try:
            MilvusClient(uri, timeout=5).list_collections()
            return
        except Exception:
            assert time.monotonic() < deadline, f"milvus-server not ready in {seconds} s: {logs()}"
            time.sleep(2)


def _stop(proc):
    """SIGTERM the wrapper and the milvus process it started (one session), SIGKILL after a minute."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(30)


def test_server_flat_equals_numpy_and_hnsw_recall(tmp_path, milvus_uri):
    """Through the index json (which records the server's uri): FLAT answers equal exact numpy, ids in
    order and d*, for every category; HNSW (M 16, efConstruction 100, ef 64) recall@10 >= 0.95."""
    index, queries = _index()
    _build(index, tmp_path / "flat", uri=milvus_uri)
    searcher = load(tmp_path / "flat")
    assert searcher.engine.uri == milvus_uri
    exact = Searcher(index, "numpy")
    for category in index.categories:
        ids, d = searcher.search(queries, category, 10)
        want_ids, want_d = exact.search(queries, category, 10)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(d, want_d, atol=1e-5)
    searcher.engine.close()
    _build(index, tmp_path / "hnsw", "HNSW", uri=milvus_uri, m=16, ef_construction=100, ef_search=64)
    searcher = load(tmp_path / "hnsw")
    ids, _ = searcher.search(queries, "b", 10)
    want = exact.search(queries, "b", 10)[0]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want)]) >= 0.95
    searcher.engine.close()


def test_server_update_deletes_and_upserts(tmp_path, milvus_uri):
    """`recommend index --update --remove`: a removed id is never returned by the next load's queries;
    an upsert onto a query's vector comes first at once; answers equal exact numpy on the changed catalog."""
    index, queries = _index()
    stem = tmp_path / "cat"
    _build(index, stem, uri=milvus_uri)
    top = load(stem).search(queries, "a", 3)[0]
    gone = sorted(set(top[:, 0]))
    (tmp_path / "ids.txt").write_text("\n".join(gone))
    report = update_index(str(stem), remove=str(tmp_path / "ids.txt"))
    assert sorted(report.removed) == gone and report.generation == 2
    searcher = load(stem)
    moved = str(top[1, 2])
    searcher.engine.add([moved], queries[1:2], [0])
    ids, d = searcher.search(queries, "a", 10)
    assert not set(ids.ravel()) & set(gone)
    assert ids[1, 0] == moved and abs(d[1, 0] - 1.0) < 1e-5
    np.testing.assert_array_equal(ids, Searcher(searcher.engine.index, "numpy").search(queries, "a", 10)[0])
    assert searcher.engine.count() == len(index) - len(gone)
    searcher.engine.close()
