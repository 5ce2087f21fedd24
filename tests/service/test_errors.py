"""Every error answer of the service, on real server processes: status, one-line reason, alive after."""

import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from tests.helpers.serve_testing import ENV, Server, call, free_port

pytestmark = pytest.mark.slow


def _encode(width, height, fmt, seed=0, **kwargs):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _forged_jpeg(width, height):
    """A real 16 x 16 JPEG whose header claims width x height: libjpeg decodes it grey with a warning."""
    data = bytearray(_encode(16, 16, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _flat_png(width, height):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def scene(serve_setup):
    with open(serve_setup[3][0], "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def keyed_server(serve_setup, tmp_path_factory):
    export_dir, stem, _, _ = serve_setup
    tmp = tmp_path_factory.mktemp("keyed")
    (tmp / "key").write_text("s3cret-key\n")
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", f"--api_key_file={tmp / 'key'}",
                    "--max_queue=1", "--max_batch=1", log_path=tmp / "server.log")
    yield server
    server.stop()


def _error(result, status):
    got, headers, body = result
    assert got == status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert "\n" not in body["error"] and "Traceback" not in body["error"] and body["error"]
    return body["error"], headers


CASES = [
    # (name, query, body maker, content type, status, words in the reason)
    ("too large a body", "?k=2", lambda s: b"\xff\xd8\xff" + b"0" * 400_000, "image/jpeg", 413, "max_body_bytes"),
    ("too many pixels", "?k=2", lambda s: _flat_png(600, 600), "image/png", 413, "360000 pixels"),
    ("webp", "?k=2", lambda s: _encode(40, 40, "WEBP"), "image/webp", 415, "WebP"),
    ("text body", "?k=2", lambda s: b"hello", "image/jpeg", 415, "JPEG or PNG"),
    ("wrong content type", "?k=2", lambda s: s, "application/json", 415, "Content-Type application/json"),
    ("header unreadable", "?k=2", lambda s: b"\xff\xd8\xff" + b"\0" * 100, "image/jpeg", 422, "header"),
    ("truncated jpeg", "?k=2", lambda s: s[: len(s) // 3], "image/jpeg", 422, "cannot use this image"),
    ("empty body", "?k=2", lambda s: b"", "image/jpeg", 422, "empty body"),
    ("k zero", "?k=0", lambda s: s, "image/jpeg", 422, "k=0 is out of range"),
    ("k too large", "?k=101", lambda s: s, "image/jpeg", 422, "out of range 1..100"),
    ("k not a number", "?k=abc", lambda s: s, "image/jpeg", 422, "not an integer"),
    ("unknown category", "?categories=shoes,hats", lambda s: s, "image/jpeg", 404, "'hats'"),
    ("deadline", "?k=2&timeout_ms=1", lambda s: s, "image/jpeg", 504, "deadline of 1 ms"),
    ("multipart without image", "?k=2", lambda s: b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
     "multipart/form-data; boundary=b", 422, "file field named 'image'"),
]


@pytest.mark.parametrize("name,query,make,content_type,status,words", CASES, ids=[c[0] for c in CASES])
def test_error_answers(batched_server, scene, name, query, make, content_type, status, words):
    reason, _ = _error(batched_server.post("/v1/look" + query, make(scene), content_type), status)
    assert words in reason, reason
    assert not any(internal in reason for internal in ("[[", "{{node", "[Op:", "::")), reason


def test_tower_refusals_read_as_one_human_sentence(batched_server, scene):
    """TensorFlow's decode errors lose their graph internals ([[{{node ...}}]], [Op:...])."""
    reason, _ = _error(batched_server.post("/v1/look?k=2", scene[: len(scene) // 3]), 422)
    assert reason == "the scene tower cannot use this image: Invalid JPEG data or crop window.", reason


def test_forged_jpeg_header_is_refused(keyed_server):
    """776 bytes claiming 4000 x 4000 pixels decode as a grey frame (libjpeg only warns): refused."""
    reason, _ = _error(keyed_server.post("/v1/look?k=2", _forged_jpeg(4000, 4000), headers={"X-API-Key": "s3cret-key"}),
                       422)
    assert "4000 x 4000" in reason and "truncated or forged" in reason


def test_echoed_ids_are_clipped(batched_server, scene):
    long_id = "p" * 10_000
    status, _, body = call(batched_server.url + f"/v1/products/{long_id}/image")
    assert status == 404 and json.loads(body)["error"] == f"no image of product '{'p' * 80}...' in this catalog"
    reason, _ = _error(batched_server.post("/v1/look?categories=" + "x" * 5000, scene), 404)
    assert f"'{'x' * 80}...'" in reason and len(reason) < 400, reason
    status, _, body = call(batched_server.url + "/" + "y" * 10_000)
    assert status == 404 and len(body) < 300, body[:300]


def test_other_routes_errors(batched_server, scene):
    reason, _ = _error(batched_server.post("/v1/query?k=2", scene), 422)
    assert "category=NAME" in reason
    _error(batched_server.post("/v1/query?category=hats", scene), 404)
    status, _, body = call(batched_server.url + "/v1/products/no-such-id/image")
    assert status == 404 and b"no-such-id" in body
    status, _, body = call(batched_server.url + "/v1/nothing-here")
    assert status == 404 and b"/v1/nothing-here" in body
    status, _, _ = call(batched_server.url + "/v1/look")  # GET on a POST route
    assert status == 405


def test_corrupt_image_in_a_batch_fails_alone(batched_server, scene):
    """A truncated JPEG among concurrent good ones: only it gets 422 (the batch is retried per image)."""
    bodies = [scene[: len(scene) // 3] if i == 3 else scene for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: batched_server.post("/v1/look?k=2", b), bodies))
    assert [r[0] for r in results] == [422 if i == 3 else 200 for i in range(8)]


def test_api_key(keyed_server, scene):
    reason, _ = _error(keyed_server.post("/v1/look?k=2", scene), 401)
    assert "API key" in reason
    _error(keyed_server.post("/v1/look?k=2", scene, headers={"X-API-Key": "s3cret-kez"}), 401)
    _error(keyed_server.post("/admin/reload", b"", headers={"X-API-Key": "wrong"}), 401)
    assert keyed_server.post("/v1/look?k=2", scene, headers={"X-API-Key": "s3cret-key"})[0] == 200
    assert keyed_server.post("/v1/look?k=2", scene, headers={"Authorization": "Bearer s3cret-key"})[0] == 200
    assert call(keyed_server.url + "/v1/categories")[0] == 200  # reading routes stay open


def test_api_key_guards_metrics_not_thumbnails(keyed_server):
    """With a key, /metrics needs it (traffic and error rates); the catalog's thumbnails, categories,
    the page and the probes stay open: an <img> cannot send a header, and they are the catalog's own
    public pictures."""
    status, _, body = call(keyed_server.url + "/metrics")
    assert status == 401 and "API key" in json.loads(body)["error"]
    status, _, body = call(keyed_server.url + "/metrics", headers={"Authorization": "Bearer s3cret-key"})
    assert status == 200 and b"ctl_requests_total" in body
    assert call(keyed_server.url + "/v1/products/no-such-id/image")[0] == 404
    for path in ("/", "/healthz", "/readyz", "/v1/categories"):
        assert call(keyed_server.url + path)[0] == 200, path


def test_full_queue_answers_503_with_retry_after(keyed_server, scene):
    """--max_queue=1: of 16 simultaneous requests some are refused at once with Retry-After; the rest succeed."""
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: keyed_server.post("/v1/look?k=2", scene, headers={"X-API-Key": "s3cret-key"}),
                                range(16)))
    statuses = sorted(r[0] for r in results)
    assert set(statuses) == {200, 503}, statuses
    refused = [r for r in results if r[0] == 503]
    reason, headers = _error(refused[0], 503)
    assert "max_queue=1" in reason and headers.get("Retry-After") == "1"


def test_server_alive_and_counted_after_errors(batched_server, scene):
    assert call(batched_server.url + "/healthz")[0] == 200
    assert batched_server.post("/v1/look?k=2", scene)[0] == 200
    metrics = call(batched_server.url + "/metrics")[2].decode()
    for line in ('ctl_requests_total{route="/v1/look",status="413"}', 'ctl_requests_total{route="/v1/look",status="504"}',
                 "ctl_batch_size_bucket", "ctl_index_generation 1.0", "ctl_model_version 1.0", "ctl_queue_depth"):
        assert line in metrics, line


def test_startup_failure_is_one_line_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.serve", f"--index={tmp_path / 'none'}",
                           f"--port={free_port()}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"serve: error: cannot serve --index={tmp_path / 'none'}: index file") and "not found" in last


def test_listening_beyond_loopback_without_a_key_warns(tmp_path):
    """--host=0.0.0.0 and no --api_key_file: one warning line naming what is open to anyone."""
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.serve", f"--index={tmp_path / 'none'}", "--host=0.0.0.0",
                           f"--port={free_port()}"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 1
    warning = [line for line in proc.stderr.splitlines() if "without --api_key_file" in line]
    assert len(warning) == 1 and "listening on 0.0.0.0" in warning[0] and "/metrics" in warning[0], proc.stderr[-2000:]
