"""The look service on a Milvus Lite index (real processes): `recommend index --remove` while the
service holds the served generation's database (the watch-and-update flow), `recommend look` refused
in one line meanwhile, and a forced reload that checks the database really is there."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from tests.helpers.serve_testing import ENV, Server, call

from ctl_keras.retrieval.milvus_store import holder

pytest.importorskip("pymilvus", reason="the [milvus] extra (pymilvus + milvus-lite) is not installed")
pytestmark = pytest.mark.slow
K = 10


def _recommend(*args):
    return subprocess.run([sys.executable, "-m", "ctl_keras.recommend", *args], capture_output=True, text=True,
                          env=ENV, timeout=600)


def _ids(look):
    return {c: [r["product_id"] for r in results] for c, results in look.items()}


def _exact(stem, scene):
    """`recommend look` by exact search over the index's arrays (FLAT Milvus ranks the same)."""
    proc = _recommend("look", f"--index={stem}", f"--scene={scene}", f"--k={K}", "--json", "--backend=numpy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _ids(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def lite_server(serve_setup, tmp_path_factory):
    export_dir, _, data_dir, _ = serve_setup
    tmp = tmp_path_factory.mktemp("milvus_service")
    stem = str(tmp / "catalog")
    proc = _recommend("index", f"--export_dir={export_dir}", f"--products={data_dir}:test", f"--index={stem}",
                      "--backend=milvus", "--milvus_index=FLAT")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (tmp / "key").write_text("k3y")
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", "--watch_seconds=0.5", "--max_batch=4",
                    f"--api_key_file={tmp / 'key'}", "--deadline_ms=2000", log_path=tmp / "server.log")
    yield server, stem, tmp
    server.stop()


def _generation(server) -> dict:
    status, _, body = call(server.url + "/readyz")
    assert status == 200, body
    return json.loads(body)


def test_update_while_the_service_holds_the_lite_database(lite_server, serve_setup):
    """While the service serves generation 1 from its Milvus Lite database: `recommend look` is refused
    in one line naming the service's pid (Lite is one process at a time); `recommend index --remove`
    works (it writes generation 2 into a database of its own) while 3 clients query; every answer is
    exactly generation 1's or 2's, none fails, and the service then serves 2 and lets go of 1's database."""
    server, stem, tmp = lite_server
    scene = serve_setup[3][0]
    with open(scene, "rb") as f:
        image = f.read()
    assert _generation(server)["index_generation"] == 1
    proc = _recommend("look", f"--index={stem}", f"--scene={scene}", "--k=3")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"is open in another process (pid {server.proc.pid}); Milvus Lite serves one process at a time" in lines[-1]
    expected = {1: _exact(stem, scene)}
    with open(stem + ".json") as f:
        first_db = os.path.join(os.path.dirname(stem), json.load(f)["search"]["uri"])
    assert holder(first_db) == server.proc.pid
    removed = sorted({ids[0] for ids in expected[1].values() if ids})
    (tmp / "remove.txt").write_text("\n".join(removed) + "\n")
    answers, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            answers.append(server.post(f"/v1/look?k={K}", image, headers={"X-API-Key": "k3y"})[::2])

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc = _recommend("index", f"--index={stem}", f"--remove={tmp / 'remove.txt'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    end = time.monotonic() + 60
    while time.monotonic() < end and _generation(server)["index_generation"] != 2:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    expected[2] = _exact(stem, scene)
    assert not set(removed) & {p for ids in expected[2].values() for p in ids}
    assert all(status == 200 for status, _ in answers), [b for s, b in answers if s != 200][:3]
    assert {body["index_generation"] for _, body in answers} == {1, 2}
    for _, body in answers:
        assert _ids(body["look"]) == expected[body["index_generation"]]
    end = time.monotonic() + 30  # the service lets generation 1's database go once its batches are done
    while time.monotonic() < end and holder(first_db) is not None:
        time.sleep(0.5)
    assert holder(first_db) is None


def test_reload_checks_the_lite_database_is_really_there(lite_server, serve_setup):
    """The served generation's collection files moved away under the running service: a forced reload
    is refused (409, naming the missing collection) instead of answering from the service's memory,
    which would hide that the next start fails; the service keeps answering. Once the files are back,
    the watcher's retry loads the generation again and clears last_reload_error, with no new write."""
    server, stem, tmp = lite_server
    with open(serve_setup[3][0], "rb") as f:
        image = f.read()
    generation = _generation(server)["index_generation"]
    with open(stem + ".json") as f:
        search = json.load(f)["search"]
    collection = os.path.join(os.path.dirname(stem), search["uri"], "collections", search["collection"])
    os.rename(collection, str(tmp / "moved"))
    try:
        status, _, body = server.post("/admin/reload", b"", headers={"X-API-Key": "k3y"})
        assert status == 409 and "missing or damaged" in body["result"], body
        ready = _generation(server)
        assert ready["index_generation"] == generation and "missing or damaged" in ready["last_reload_error"]
        status, _, body = server.post(f"/v1/look?k={K}", image, headers={"X-API-Key": "k3y"})
        assert status == 200 and body["index_generation"] == generation
    finally:
        os.rename(str(tmp / "moved"), collection)
    end = time.monotonic() + 30
    while time.monotonic() < end and _generation(server)["last_reload_error"] is not None:
        time.sleep(0.5)
    ready = _generation(server)
    assert ready["last_reload_error"] is None and ready["index_generation"] == generation, ready
    status, _, body = server.post("/admin/reload", b"", headers={"X-API-Key": "k3y"})
    assert status == 200 and body["index_generation"] == generation, body
