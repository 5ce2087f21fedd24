"""/v1/look answers what `recommend look --json` prints for the same image, batched and unbatched."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.helpers.serve_testing import ENV, Server

pytestmark = pytest.mark.slow
K = 3


def _cli_look(stem, scene, k, categories=None):
    args = [sys.executable, "-m", "ctl_keras.recommend", "look", f"--index={stem}", f"--scene={scene}", f"--k={k}",
            "--json"] + ([f"--categories={categories}"] if categories else [])
    proc = subprocess.run(args, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def expected(serve_setup):
    _, stem, _, scenes = serve_setup
    return {scene: _cli_look(stem, scene, K) for scene in scenes}


@pytest.fixture(scope="module")
def unbatched_server(serve_setup, tmp_path_factory):
    export_dir, stem, _, _ = serve_setup
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", "--max_batch=1",
                    log_path=tmp_path_factory.mktemp("logs") / "unbatched.log")
    yield server
    server.stop()


def _assert_same(got: dict, want: dict):
    assert list(got) == list(want)
    for category in want:
        assert [r["product_id"] for r in got[category]] == [r["product_id"] for r in want[category]], category
        np.testing.assert_allclose([r["d_star"] for r in got[category]], [r["d_star"] for r in want[category]],
                                   atol=1e-5)


def _look(server, scene, query=f"?k={K}"):
    with open(scene, "rb") as f:
        status, _, body = server.post("/v1/look" + query, f.read())
    assert status == 200, body
    return body


def test_unbatched_equals_cli(unbatched_server, expected):
    for scene, want in expected.items():
        body = _look(unbatched_server, scene)
        assert body["batch_size"] == 1
        _assert_same(body["look"], want)


def test_batched_concurrent_equals_cli(batched_server, expected):
    """24 concurrent requests over 3 scenes: gathered into batches > 1, each answer equal to the CLI's."""
    scenes = list(expected) * 8
    with ThreadPoolExecutor(12) as pool:
        bodies = list(pool.map(lambda s: _look(batched_server, s), scenes))
    assert max(b["batch_size"] for b in bodies) > 1
    for scene, body in zip(scenes, bodies):
        _assert_same(body["look"], expected[scene])


def test_categories_subset_and_query(batched_server, serve_setup, expected):
    """?categories=b,a keeps that order; /v1/query gives the one list `recommend look` gives it."""
    _, stem, _, scenes = serve_setup
    want = _cli_look(stem, scenes[0], 2, "tops,shoes")
    _assert_same(_look(batched_server, scenes[0], "?k=2&categories=tops,shoes")["look"], want)
    with open(scenes[0], "rb") as f:
        status, _, body = batched_server.post("/v1/query?category=shoes&k=3", f.read())
    assert status == 200, body
    _assert_same({"shoes": body["results"]}, {"shoes": expected[scenes[0]]["shoes"]})


def test_multipart_upload_equals_raw_body(batched_server, expected):
    scene = next(iter(expected))
    with open(scene, "rb") as f:
        data = f.read()
    boundary = "ctlboundary7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"s.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, _, out = batched_server.post(f"/v1/look?k={K}", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200, out
    _assert_same(out["look"], expected[scene])
