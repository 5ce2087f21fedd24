"""A living catalog under load (swap, broken generation, reload), SIGTERM drain, RSS under hostile input."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.helpers.serve_testing import ENV, Server, call, copy_stem, looks_during_sigterm

pytestmark = pytest.mark.slow
K = 20  # large enough that removing products changes every list


def _cli_look(stem, scene):
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "look", f"--index={stem}",
                           f"--scene={scene}", f"--k={K}", "--json"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _ids(look):
    return {c: [r["product_id"] for r in results] for c, results in look.items()}


@pytest.fixture(scope="module")
def swap_server(serve_setup, tmp_path_factory):
    export_dir, stem, _, _ = serve_setup
    tmp = tmp_path_factory.mktemp("swap")
    private = copy_stem(stem, str(tmp / "index"))
    (tmp / "key").write_text("k3y")
    server = Server(f"--export_dir={export_dir}", f"--index={private}", "--watch_seconds=0.5",
                    f"--api_key_file={tmp / 'key'}", "--max_batch=4", log_path=tmp / "server.log")
    yield server, private, tmp
    server.stop()


def test_swap_under_concurrent_load(swap_server, serve_setup):
    """`recommend index --remove` writes generation 2 while 4 clients query: no request fails, and every
    answer is exactly generation 1's or generation 2's (as `recommend look` gives them), never a mix."""
    server, stem, tmp = swap_server
    scene = serve_setup[3][0]
    with open(scene, "rb") as f:
        image = f.read()
    expected = {1: _ids(_cli_look(stem, scene))}
    removed = sorted({ids[0] for ids in expected[1].values() if ids})
    (tmp / "remove.txt").write_text("\n".join(removed) + "\n")
    answers, per_client, stop = [], [[] for _ in range(4)], threading.Event()

    def client(mine):
        while not stop.is_set():
            status, _, body = server.post(f"/v1/look?k={K}", image, headers={"X-API-Key": "k3y"})
            answers.append((status, body))
            mine.append(body.get("index_generation") if isinstance(body, dict) else None)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in per_client]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "index", f"--index={stem}",
                           f"--remove={tmp / 'remove.txt'}"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    end = time.monotonic() + 60
    while time.monotonic() < end and not any(s == 200 and b["index_generation"] == 2 for s, b in answers[-4:]):
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    expected[2] = _ids(_cli_look(stem, scene))
    assert expected[2] != expected[1]
    assert all(status == 200 for status, _ in answers), [b for s, b in answers if s != 200][:3]
    for generations in per_client:  # each client saw generation 1, then 2, never back
        assert generations[0] == 1 and generations[-1] == 2 and generations == sorted(generations), generations
    for _, body in answers:
        assert _ids(body["look"]) == expected[body["index_generation"]]
    assert not set(removed) & {p for ids in expected[2].values() for p in ids}


def test_broken_generation_refused_old_kept(swap_server, serve_setup):
    """A generation whose arrays do not match its json is refused (logged, metric); the old one serves on.
    /admin/reload (API key) forces a check and says why."""
    server, stem, _ = swap_server
    before = call(server.url + "/readyz")
    generation = json.loads(before[2])["index_generation"]
    with open(stem + ".json") as f:
        meta = json.load(f)
    good = dict(meta)
    meta.update(generation=generation + 1, npz_sha256="0" * 64)
    with open(stem + ".json.tmp", "w") as f:
        json.dump(meta, f)
    os.replace(stem + ".json.tmp", stem + ".json")
    time.sleep(2.0)
    ready = json.loads(call(server.url + "/readyz")[2])
    assert ready["index_generation"] == generation and "does not match" in ready["last_reload_error"]
    with open(serve_setup[3][0], "rb") as f:
        status, _, body = server.post("/v1/look?k=2", f.read(), headers={"X-API-Key": "k3y"})
    assert status == 200 and body["index_generation"] == generation
    metrics = call(server.url + "/metrics", headers={"X-API-Key": "k3y"})[2].decode()  # keyed like the POST routes
    assert 'ctl_index_reloads_total{result="refused"}' in metrics
    status, _, body = server.post("/admin/reload", b"", headers={"X-API-Key": "k3y"})
    assert status == 409 and body["result"].startswith("refused") and body["index_generation"] == generation
    with open(stem + ".json.tmp", "w") as f:  # the good json back: a forced reload loads it again
        json.dump(good, f)
    os.replace(stem + ".json.tmp", stem + ".json")
    status, _, body = server.post("/admin/reload", b"", headers={"X-API-Key": "k3y"})
    assert status == 200 and body["index_generation"] == generation, body


def test_rss_flat_after_1000_hostile_requests(batched_server, serve_setup):
    with open(serve_setup[3][0], "rb") as f:
        scene = f.read()
    hostile = [("/v1/look?k=2", b"\xff\xd8\xff" + b"1" * 299_000, "image/jpeg"),   # garbage JPEG header
               ("/v1/look?k=2", scene[: len(scene) // 2], "image/jpeg"),           # truncated: reaches the tower
               ("/v1/look?k=2", b"GIF89a" + b"x" * 5000, "image/gif"),
               ("/v1/look?k=-3", scene, "image/jpeg"),
               ("/v1/look?categories=" + "x" * 2000, scene, "image/jpeg"),
               ("/v1/look?k=2", b"\x89PNG\r\n\x1a\n" + b"\xff" * 30, "image/png"),
               ("/v1/look?k=2", b"--b\r\n\r\n" * 500, "multipart/form-data; boundary=b"),
               ("/v1/look?k=2", b"{}", "application/json")]

    def hammer(n):
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda i: batched_server.post(*hostile[i % len(hostile)])[0], range(n)))
        assert all(400 <= s < 500 for s in statuses), sorted(set(statuses))

    hammer(80)  # allocator arenas and caches settle
    start = batched_server.rss_kb()
    hammer(1000)
    end = batched_server.rss_kb()
    assert end <= start * 1.10, (start, end)
    assert call(batched_server.url + "/healthz")[0] == 200


def test_sigterm_drains_in_flight_and_exits_0(serve_setup, tmp_path):
    """Requests queued when SIGTERM arrives (a 400 ms batching window) are all answered; exit code 0."""
    export_dir, stem, _, scenes = serve_setup
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", "--max_batch=16", "--max_wait_ms=400",
                    log_path=tmp_path / "server.log")
    results = looks_during_sigterm(server, scenes[0], 6, 0.15)
    assert [r[0] for r in results] == [200] * 6
    assert server.proc.wait(60) == 0, open(tmp_path / "server.log").read()[-2000:]
    with pytest.raises(OSError):
        call(server.url + "/healthz", timeout=5)
    server.stop()
