"""Hostile clients against a real server process over real sockets: half-sent heads, an idle flood
past `ulimit -n`, slow uploaders filling the connection cap, hang-ups, a 50 MB body sent without
Expect: 100-continue, SIGTERM with slow uploaders or with requests past the drain."""

import http.client
import resource
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest
from tests.helpers.serve_testing import Server, call, looks_during_sigterm

pytestmark = pytest.mark.slow
NOFILE = 300  # the server's `ulimit -n`; its default connection cap is then 300 - 256 = 44
CAP = NOFILE - 256
HEAD_TIMEOUT, BODY_TIMEOUT = 2.0, 3.0
SLOW_UPLOAD = (b"POST /v1/look?k=2 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
               b"Content-Length: 100000\r\n\r\n\xff\xd8\xff")


def _low_ulimit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture(scope="module")
def guarded(serve_setup, tmp_path_factory):
    export_dir, stem, _, scenes = serve_setup
    log = tmp_path_factory.mktemp("hostile") / "server.log"
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", f"--head_timeout={HEAD_TIMEOUT}",
                    f"--body_timeout={BODY_TIMEOUT}", log_path=log, preexec_fn=_low_ulimit)
    with open(scenes[0], "rb") as f:
        server.scene = f.read()
    yield server
    server.stop()


def _look(server, timeout=30):
    return server.post("/v1/look?k=2", server.scene, timeout=timeout)[:2]


def _metric(server, name) -> float:
    for line in call(server.url + "/metrics")[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _until_closed(sock, timeout) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or `timeout`), and the seconds that took."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data, time.monotonic() - started


def _log(server) -> str:
    with open(server.log_path) as f:
        return f.read()


def test_half_sent_head_is_closed_within_head_timeout(guarded):
    """Half a head: 408 then closed; nothing at all: closed; half a second head on a kept-alive
    connection: 408 too (uvicorn's keep-alive timer stops at the first byte)."""
    half = socket.create_connection(("127.0.0.1", guarded.port))
    half.sendall(b"POST /v1/look HTTP/1.1\r\nHost: x\r\n")
    silent = socket.create_connection(("127.0.0.1", guarded.port))
    kept = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
    kept.request("GET", "/healthz")
    assert kept.getresponse().read() == b'{"status":"ok"}'
    kept.sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    sent = time.monotonic()
    for sock, answer in ((half, b"HTTP/1.1 408"), (silent, b""), (kept.sock, b"HTTP/1.1 408")):
        data, _ = _until_closed(sock, 15)
        assert data.startswith(answer) and (not answer or b"--head_timeout=2" in data), data
        assert time.monotonic() - sent < HEAD_TIMEOUT + 1.5
        sock.close()
    assert time.monotonic() - sent > HEAD_TIMEOUT - 0.5  # closed by the timeout, not at once


def test_idle_flood_past_ulimit_keeps_looks_working_and_the_log_small(guarded):
    """400 idle connections against `ulimit -n` 300: the oldest idle ones are closed for new ones
    (open connections stay at the cap), a look succeeds, and no accept fails for want of descriptors
    (one that did is logged once per 10 s: test_log_limits)."""
    before = len(_log(guarded).splitlines())
    idle = [socket.create_connection(("127.0.0.1", guarded.port), timeout=10) for _ in range(400)]
    time.sleep(1.0)
    assert _look(guarded, timeout=10)[0] == 200
    assert _metric(guarded, "ctl_open_connections") <= CAP + 1
    assert _metric(guarded, 'ctl_connections_closed_total{reason="evicted"}') >= 400 - CAP
    for sock in idle:
        sock.close()
    time.sleep(1.0)
    added = _log(guarded).splitlines()[before:]
    # --backlog (128) bounds what one wake-up accepts below the descriptors the cap leaves free
    assert not any("Traceback" in line or "Too many open files" in line for line in added), added[:20]


def test_busy_cap_refuses_with_503_then_recovers(guarded):
    """Slow uploaders fill the cap: a new connection is refused (503, Retry-After) at once; after
    --body_timeout each uploader reads 408 and looks succeed again."""
    slow = []
    for _ in range(CAP + 5):
        sock = socket.create_connection(("127.0.0.1", guarded.port))
        sock.sendall(SLOW_UPLOAD)
        slow.append(sock)
    time.sleep(0.5)
    status, headers, body = guarded.post("/v1/look?k=2", guarded.scene, timeout=10)
    assert status == 503 and headers.get("Retry-After") == "1", body
    assert f"--max_connections={CAP}" in body["error"]
    answers = [_until_closed(sock, BODY_TIMEOUT + 15)[0] for sock in slow]
    assert sum(a.startswith(b"HTTP/1.1 408") and b"--body_timeout=3" in a for a in answers) >= CAP - 1
    # the refused ones: 503, or dropped for the next refused one (the cap holds at most one lingering)
    assert all(a.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) or a == b"" for a in answers), {a[:20] for a in answers}
    for sock in slow:
        sock.close()
    assert _look(guarded)[0] == 200
    assert _metric(guarded, 'ctl_requests_total{route="/v1/look",status="408"}') >= CAP - 1
    assert "Traceback" not in _log(guarded)


def test_50_mb_upload_reads_its_413(guarded):
    """urllib (Connection: close), requests and http.client write the whole body before reading: the
    server reads and drops it (lingering close) so each gets the 413 and its reason, not a reset."""
    import requests

    body = b"\xff\xd8\xff" + bytes(50 << 20)
    request = urllib.request.Request(guarded.url + "/v1/look", data=body, headers={"Content-Type": "image/jpeg"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 413 and b"--max_body_bytes" in err.value.read()
    answer = requests.post(guarded.url + "/v1/look", data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert answer.status_code == 413 and "--max_body_bytes" in answer.json()["error"]
    conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=60)
    conn.request("POST", "/v1/look", body=body, headers={"Content-Type": "image/jpeg"})
    answer = conn.getresponse()
    assert answer.status == 413 and b"--max_body_bytes" in answer.read()
    conn.close()


def test_client_hang_up_is_counted_apart_not_as_500(guarded):
    failed = _metric(guarded, 'ctl_requests_total{route="/v1/look",status="500"}')
    gone = _metric(guarded, 'ctl_client_disconnects_total{route="/v1/look"}')
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", guarded.port)) as sock:
            sock.sendall(SLOW_UPLOAD)
            time.sleep(0.05)
    end = time.monotonic() + 10
    while time.monotonic() < end and _metric(guarded, 'ctl_client_disconnects_total{route="/v1/look"}') < gone + 20:
        time.sleep(0.2)
    assert _metric(guarded, 'ctl_client_disconnects_total{route="/v1/look"}') == gone + 20
    assert _metric(guarded, 'ctl_requests_total{route="/v1/look",status="499"}') >= 20
    assert _metric(guarded, 'ctl_requests_total{route="/v1/look",status="500"}') == failed
    log = _log(guarded)
    assert "ClientDisconnect" not in log and "/v1/look failed" not in log and "Traceback" not in log


def test_sigterm_closes_slow_uploaders_at_once_without_tracebacks(serve_setup, tmp_path):
    """300 slow uploaders when SIGTERM comes: each is answered 503 and closed; the process exits 0
    well before --drain_seconds=20, and the log has no traceback."""
    export_dir, stem, _, _ = serve_setup
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", log_path=tmp_path / "server.log")
    slow = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(SLOW_UPLOAD)
        slow.append(sock)
    time.sleep(1.0)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0
    assert time.monotonic() - started < 10
    answers = [_until_closed(sock, 10)[0] for sock in slow]
    assert all(a.startswith(b"HTTP/1.1 503") and b"shutting down" in a for a in answers), {a[:20] for a in answers}
    server.stop()
    log = _log(server)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_requests_past_the_drain_deadline_get_503_not_tracebacks(serve_setup, tmp_path):
    """Looks still waiting in a 3 s batching window when a 0.5 s drain ends are cancelled: each is
    answered 503 in one line, and the log holds uvicorn's one line, not a traceback per request."""
    export_dir, stem, _, scenes = serve_setup
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", "--max_batch=16", "--max_wait_ms=3000",
                    "--drain_seconds=0.5", log_path=tmp_path / "server.log")
    results = looks_during_sigterm(server, scenes[0], 3, 0.3)
    assert [(status, body) for status, _, body in results] == [(503, {"error": "server shutting down; retry"})] * 3
    assert server.stop() == 0
    log = _log(server)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
