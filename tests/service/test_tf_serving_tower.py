"""--tower=grpc:// and --tower=http://: the scene tower behind TF Serving's Predict API (a second
process; see prediction_service.py) through ctl_keras/savedmodel/client.py; answers equal
`recommend look --json`, and an image the tower refuses is the client's 422."""

import contextlib
import os
import subprocess
import sys
import time

import pytest
from tests.helpers.serve_testing import ENV, Server, free_port
from tests.service.test_parity import K, _assert_same, _cli_look

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def _prediction_service(export_dir, kind, log_path, *extra):
    """prediction_service.py on a free port; yields the --tower= URL."""
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.dirname(__file__)), "helpers", "prediction_service.py"),
                             export_dir, str(port), kind, *extra], stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        deadline = time.time() + 120
        while "serving" not in log_path.read_text():
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.2)
        yield f"{'grpc' if kind == 'grpc' else 'http'}://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture(scope="module", params=["grpc", "rest"])
def tf_serving_tower(request, serve_setup, tmp_path_factory):
    log_path = tmp_path_factory.mktemp(request.param) / "service.log"
    with _prediction_service(serve_setup[0], request.param, log_path) as url:
        yield url


def test_tf_serving_tower_equals_cli(serve_setup, tf_serving_tower, tmp_path):
    export_dir, stem, _, scenes = serve_setup
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", f"--tower={tf_serving_tower}",
                    log_path=tmp_path / "server.log")
    try:
        with open(scenes[0], "rb") as f:
            image = f.read()
        status, _, body = server.post(f"/v1/look?k={K}", image)
        assert status == 200, body
        _assert_same(body["look"], _cli_look(stem, scenes[0], K))
        status, _, body = server.post("/v1/look?k=2", image[: len(image) // 3])
        assert status == 422 and "cannot use this image" in body["error"], body
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_version_tf_serving_does_not_serve_is_one_line(serve_setup, tmp_path, kind):
    """TF Serving's default policy serves only the latest version: after a re-export without a
    re-index it answers NOT_FOUND (REST 404) for the index's version. The service says what to do in
    one line: at start (exit 1), and live (503 + Retry-After, one log line, no traceback)."""
    export_dir, stem, _, scenes = serve_setup
    served = tmp_path / "served_versions"
    served.write_text("2")
    with _prediction_service(export_dir, kind, tmp_path / "service.log", str(served)) as url:
        proc = subprocess.run([sys.executable, "-m", "ctl_keras.serve", f"--index={stem}", f"--export_dir={export_dir}",
                               f"--tower={url}", f"--port={free_port()}"], capture_output=True, text=True, env=ENV,
                              timeout=300)
        assert proc.returncode == 1
        last = proc.stderr.strip().splitlines()[-1]
        assert "does not serve scene_tower version 1" in last and "num_versions: 2" in last, last
        assert "re-index" in last and "Traceback" not in proc.stderr

        served.write_text("1")
        server = Server(f"--export_dir={export_dir}", f"--index={stem}", f"--tower={url}",
                        log_path=tmp_path / "server.log")
        try:
            with open(scenes[0], "rb") as f:
                image = f.read()
            assert server.post("/v1/look?k=2", image)[0] == 200
            served.write_text("2")  # TF Serving loaded a new export and unloaded the index's version
            for _ in range(3):
                status, headers, body = server.post("/v1/look?k=2", image)
                assert status == 503 and headers.get("Retry-After") == "5", body
                assert "does not serve scene_tower version 1" in body["error"] and "\n" not in body["error"]
        finally:
            assert server.stop() == 0
        log = (tmp_path / "server.log").read_text()
        assert log.count("does not serve scene_tower version 1") == 1 and "Traceback" not in log, log[-3000:]
