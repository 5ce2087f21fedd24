"""The downloader against a real HTTP server on 127.0.0.1 that misbehaves in the usual ways."""

import collections
import hashlib
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ctl_keras.data import download as dl
from ctl_keras.data import urls

FAST = dict(workers=4, retries=2, timeout=5.0, backoff=0.01)


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _sig(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        key = os.path.splitext(os.path.basename(self.path))[0]
        with server.lock:
            server.requests[key] += 1
            count = server.requests[key]
        mode = server.modes.get(key, "404")
        body = _jpeg(len(key))
        if mode == "flaky" and count == 1:
            mode = "503"
        if mode in ("404", "503"):
            self.send_error(int(mode))
            return
        if mode == "truncated":
            body = body[: len(body) // 2]  # honest Content-Length, but half a JPEG
        if mode == "trickle":  # a valid image, one byte every 100 ms: minutes for this body
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                if server.closing.is_set():
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
            return
        if mode == "huge":  # announces 10 MB (and would send them)
            self.send_response(200)
            self.send_header("Content-Length", str(10_000_000))
            self.end_headers()
            self.wfile.write(b"\0" * 65536)
            return
        if mode == "huge_unannounced":  # no Content-Length: 1.5 MB, then the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * 1_500_000)
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        # "drop": announce the full body, send half, close the connection.
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "drop" else body)
        self.close_connection = True


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.lock, httpd.requests, httpd.modes = threading.Lock(), collections.Counter(), {}
    httpd.closing = threading.Event()
    httpd.handle_error = lambda request, address: None  # a client hanging up on a trickle is expected
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.closing.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


MODES = {"scene-a": "ok", "scene-b": "ok", "prod-a": "ok", "prod-flaky": "flaky", "prod-404": "404",
         "prod-trunc": "truncated", "prod-drop": "drop"}


def _stl_setup(tmp_path, server):
    sigs = {name: _sig(name) for name in MODES}
    server.modes.update({sigs[n]: m for n, m in MODES.items()})
    rows = [{"scene": sigs["scene-a"], "product": sigs[p], "bbox": [0, 0, 1, 1]}
            for p in ("prod-a", "prod-flaky", "prod-404")]
    rows += [{"scene": sigs["scene-b"], "product": sigs[p], "bbox": [0, 0, 1, 1]}
             for p in ("prod-a", "prod-trunc", "prod-drop")]
    rows.append({"scene": "../../etc/passwd", "product": sigs["prod-a"], "bbox": [0, 0, 1, 1]})
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps(rows))
    return sigs, str(pairs)


def _listing(out):
    return sorted(os.listdir(out))


def test_stl_url_layout():
    """The upstream README's convert_to_url: prefix/s[0:2]/s[2:4]/s[4:6]/s.jpg."""
    s = "0027e30879ce3d87f82f699f148bff7e"
    assert urls.stl_url(s) == f"http://i.pinimg.com/400x/00/27/e3/{s}.jpg"
    assert urls.stl_url(s, "http://mirror/x/") == f"http://mirror/x/00/27/e3/{s}.jpg"


def test_stl_jobs_accept_json_lines(tmp_path):
    """The upstream STL release is one JSON object per line; it must give the jobs a JSON list gives."""
    rows = [{"scene": _sig("s1"), "product": _sig("p1"), "bbox": [0, 0, 1, 1]},
            {"scene": _sig("s1"), "product": _sig("p2"), "bbox": [0, 0, 1, 1]},
            {"scene": "bad/id", "product": _sig("p1"), "bbox": [0, 0, 1, 1]}]
    as_list, as_lines = tmp_path / "list.json", tmp_path / "lines.json"
    as_list.write_text(json.dumps(rows))
    as_lines.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    jobs, bad = urls.stl_jobs(str(as_lines))
    assert (jobs, bad) == urls.stl_jobs(str(as_list))
    assert bad == 1 and [j[0] for j in jobs] == sorted({_sig("s1"), _sig("p1"), _sig("p2")})


def test_download_verify_retry_resume(tmp_path, server):
    sigs, pairs = _stl_setup(tmp_path, server)
    jobs, bad = urls.stl_jobs(pairs, server.base + "/400x")
    assert bad == 1 and len(jobs) == 7  # the path-traversal "signature" is refused
    out = tmp_path / "images"
    out.mkdir()
    (out / ".tmp-4242-1234abcd-leftover.jpg").write_bytes(b"half")  # from a killed run: removed
    (out / "notes.part-1").write_bytes(b"mine")  # a user's file that only looks temporary: kept
    result = dl.download(jobs, str(out), **FAST)
    assert (result["ok"], result["failed"], result["skipped"]) == (4, 3, 0)
    good = [sigs[n] for n in ("scene-a", "scene-b", "prod-a", "prod-flaky")]
    bad_sigs = [sigs[n] for n in ("prod-404", "prod-trunc", "prod-drop")]
    assert _listing(out) == sorted([s + ".jpg" for s in good] + [dl.FAILURES_FILE, "notes.part-1"])
    assert all(dl.is_valid_image(str(out / f"{s}.jpg")) for s in good)
    # 404 is final (1 request); truncated and dropped bodies are retried (1 + 2 retries); flaky: 503, then ok.
    assert [server.requests[s] for s in bad_sigs] == [1, 3, 3]
    assert server.requests[sigs["prod-flaky"]] == 2
    lines = (out / dl.FAILURES_FILE).read_text().splitlines()
    assert lines[0] == "id\turl\treason"
    reasons = {row.split("\t")[0]: row.split("\t")[2] for row in lines[1:]}
    assert set(reasons) == set(bad_sigs)
    assert reasons[sigs["prod-404"]] == "HTTP 404"
    assert "incomplete" in reasons[sigs["prod-drop"]]
    assert "does not decode" in reasons[sigs["prod-trunc"]] and "truncated" in reasons[sigs["prod-trunc"]].lower()
    assert all(row.split("\t")[1].startswith(server.base + "/400x/") for row in lines[1:])

    # Re-run: valid files are skipped without a request; a corrupted one is fetched again.
    (out / f"{sigs['scene-b']}.jpg").write_bytes(b"not a jpeg")
    before = dict(server.requests)
    again = dl.download(jobs, str(out), **FAST)
    assert (again["ok"], again["failed"], again["skipped"]) == (1, 3, 3)
    for name in ("scene-a", "prod-a", "prod-flaky"):
        assert server.requests[sigs[name]] == before[sigs[name]]
    assert dl.is_valid_image(str(out / f"{sigs['scene-b']}.jpg"))

    # Once the server is fixed, everything is there and the failure list disappears.
    server.modes.update({s: "ok" for s in bad_sigs})
    final = dl.download(jobs, str(out), **FAST)
    assert (final["ok"], final["failed"], final["skipped"]) == (3, 0, 4)
    assert _listing(out) == sorted([s + ".jpg" for s in sigs.values()] + ["notes.part-1"])


def test_street2shop_jobs_and_rewrite(tmp_path, server):
    root = tmp_path / "s2s"
    (root / "photos").mkdir(parents=True)
    (root / "meta" / "json").mkdir(parents=True)
    (root / "photos" / "photos.txt").write_text(
        "000000001,http://dead.example/img/1.jpg\n000000002,http://dead.example/img/2.jpg\n"
        "not-an-id,http://dead.example/img/x.jpg\n000000003,http://dead.example/img/3.jpg\n\n")
    (root / "meta" / "json" / "train_pairs_tops.json").write_text(
        json.dumps([{"photo": 1, "product": 7, "bbox": {"left": 0, "top": 0, "width": 5, "height": 5}}]))
    (root / "meta" / "json" / "retrieval_tops.json").write_text(json.dumps([{"photo": 2, "product": 7}]))
    rewrite = ("http://dead.example/img", server.base + "/s2s")
    jobs, bad = urls.street2shop_jobs(str(root), rewrite)
    # Zero-padded ids become plain integers; photo 3 is in no meta file, so it is not fetched.
    assert jobs == [("1", server.base + "/s2s/1.jpg"), ("2", server.base + "/s2s/2.jpg")] and bad == 1
    assert [j[0] for j in urls.street2shop_jobs(str(root), rewrite, all_photos=True)[0]] == ["1", "2", "3"]
    server.modes.update({"1": "ok", "2": "ok"})
    result = dl.download(jobs, str(tmp_path / "out"), **FAST)
    assert (result["ok"], result["failed"]) == (2, 0)
    assert _listing(tmp_path / "out") == ["1.jpg", "2.jpg"]
    with pytest.raises(FileNotFoundError, match="photos.txt"):
        urls.street2shop_jobs(str(tmp_path / "nowhere"))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ctl_keras.download", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_summary_and_errors(tmp_path, server):
    _, pairs = _stl_setup(tmp_path, server)
    out = tmp_path / "cli"
    result = _cli("--dataset=fashion2", f"--pairs={pairs}", f"--out={out}", f"--url_prefix={server.base}/400x",
                  "--workers=4", "--retries=1", "--timeout=5", "--backoff=0.01")
    assert result.returncode == 0, result.stderr
    assert "ok 4, failed 3, skipped 0" in result.stdout
    assert len((out / dl.FAILURES_FILE).read_text().splitlines()) == 4
    for args, culprit in ((["--dataset=nope"], "nope"), (["--dataset=home", "--pairs=/no/such.json"], "such.json"),
                          (["--dataset=home"], "--pairs")):
        bad = _cli(*args, f"--out={tmp_path / 'x'}")
        assert bad.returncode == 1 and culprit in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_trickling_server_hits_the_whole_file_deadline(tmp_path, server):
    """Each read is fast (one byte per 100 ms, far under --timeout) but the file never ends in time."""
    server.modes.update({"slow": "trickle", "fine": "ok"})
    jobs = [("fine", f"{server.base}/x/fine.jpg"), ("slow", f"{server.base}/x/slow.jpg")]
    result = dl.download(jobs, str(tmp_path), workers=2, retries=1, timeout=5.0, backoff=0.01, deadline=1.0)
    assert (result["ok"], result["failed"]) == (1, 1)
    (image_id, _, reason), = result["failures"]
    assert image_id == "slow" and "deadline exceeded" in reason and "(after 2 attempts)" in reason
    assert server.requests["slow"] == 2
    assert _listing(tmp_path) == sorted(["fine.jpg", dl.FAILURES_FILE])


def test_bodies_above_max_bytes_fail_without_retry(tmp_path, server):
    server.modes.update({"big": "huge", "bigger": "huge_unannounced", "fine": "ok"})
    jobs = [(n, f"{server.base}/x/{n}.jpg") for n in ("big", "bigger", "fine")]
    result = dl.download(jobs, str(tmp_path), workers=3, retries=2, timeout=5.0, backoff=0.01, max_bytes=1_000_000)
    reasons = {i: r for i, _, r in result["failures"]}
    assert result["ok"] == 1 and set(reasons) == {"big", "bigger"}
    assert reasons["big"] == "body of 10000000 bytes exceeds --max_bytes=1000000"  # from the header alone
    assert reasons["bigger"].startswith("body exceeds --max_bytes=1000000")
    assert server.requests["big"] == server.requests["bigger"] == 1  # final: no retry
    with pytest.raises(ValueError, match="max_bytes >= 1"):
        dl.download(jobs, str(tmp_path), max_bytes=0)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                 (signal.SIGTERM, 143, "terminated")])
def test_signal_stops_promptly_and_the_rerun_resumes(tmp_path, server, signum, code, word):
    """Three workers hang on trickling bodies; the signal ends the process at once (today it would
    wait for every trickle), one line, no partial file; re-running fetches only what is missing."""
    # STL signatures: "fine00" is served at <prefix>/fi/ne/00/fine00.jpg; the handler keys on the stem.
    server.modes.update({"fine00": "ok", "slow100": "trickle", "slow200": "trickle", "slow300": "trickle"})
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([{"scene": "fine00", "product": f"slow{i}00", "bbox": [0, 0, 1, 1]}
                                 for i in (1, 2, 3)]))
    out = tmp_path / "images"
    # The child gets SIGINT's default disposition whatever ours is (a background job ignores SIGINT).
    proc = subprocess.Popen([sys.executable, "-m", "ctl_keras.download", "--dataset=home", f"--pairs={pairs}",
                             f"--out={out}", f"--url_prefix={server.base}/p", "--workers=4", "--timeout=30",
                             "--deadline=600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(600):  # until the good image is in and every trickle has started
            if (out / "fine00.jpg").exists() and all(server.requests[f"slow{i}00"] for i in (1, 2, 3)):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the downloader never got going")
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)  # today: minutes (every trickle waited for)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == f"download: {word}"
    assert "run the same command again to resume" in stderr and stdout == ""
    assert _listing(out) == ["fine00.jpg"] and dl.is_valid_image(str(out / "fine00.jpg"))
    server.modes.update({f"slow{i}00": "ok" for i in (1, 2, 3)})
    jobs, _ = urls.stl_jobs(str(pairs), f"{server.base}/p")
    again = dl.download(jobs, str(out), **FAST)
    assert (again["ok"], again["failed"], again["skipped"]) == (3, 0, 1)


def test_cli_checks_out_before_work(tmp_path, server):
    afile = tmp_path / "afile"
    afile.write_text("x")
    _, pairs = _stl_setup(tmp_path, server)
    proc = _cli("--dataset=fashion2", f"--pairs={pairs}", f"--out={afile}/sub", f"--url_prefix={server.base}/400x")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"download: error: --out={afile}/sub cannot be created: {afile} is a file, not a directory"]
    assert sum(server.requests.values()) == 0


def test_cli_non_utf8_pairs_file_is_one_line_naming_it(tmp_path):
    text = '[{"scene": "abcdef", "product": "ghijkl", "bbox": [0, 0, 1, 1], "n": "é"}]'
    pairs = tmp_path / "pairs.json"
    pairs.write_bytes(text.encode("latin-1"))
    proc = _cli("--dataset=home", f"--pairs={pairs}", f"--out={tmp_path / 'out'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"download: error: pairs file is not UTF-8 text: {pairs} (byte {text.index('é')}: b'\\xe9'); "
        "JSON files must be UTF-8"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_progress_is_a_bar_on_a_terminal_and_log_lines_in_a_pipe(tmp_path, server):
    """The real CLI, stderr on a pseudo-terminal (tqdm bar, redrawn with \\r) and on a pipe (absl log
    lines: the ~10 s ones never fire in this short run, the final one does)."""
    import pty

    _, pairs = _stl_setup(tmp_path, server)
    args = [sys.executable, "-m", "ctl_keras.download", "--dataset=fashion2", f"--pairs={pairs}",
            f"--url_prefix={server.base}/400x", "--workers=4", "--retries=1", "--timeout=5", "--backoff=0.01"]
    env = {k: v for k, v in os.environ.items() if k != "CTL_PROGRESS"}
    master, slave = pty.openpty()
    proc = subprocess.Popen([*args, f"--out={tmp_path / 'tty'}"], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    tty = b"".join(chunks).decode("utf-8", "replace")
    assert "\rdownload: 100%|" in tty and "| 7/7 [" in tty and "image/s" in tty
    piped = subprocess.run([*args, f"--out={tmp_path / 'pipe'}"], capture_output=True, text=True, timeout=120, env=env)
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "|" not in piped.stderr.split("download: 100%")[-1].split("\n")[0]
    final = [line for line in piped.stderr.splitlines() if "download: 100% 7/7 [" in line]
    assert len(final) == 1 and "image/s, ok=4, failed=3, skipped=0]" in final[0]
