"""--tower=grpc:// and --tower=http://: the scene tower behind TF Serving's Predict API (a second
process; see prediction_service.py) through ctl_keras/serving/client.py; answers equal
`recommend look --json`, and an image the tower refuses is the client's 422."""

import os
import subprocess
import sys
import time

import pytest
from serve_testing import ENV, Server, free_port
from test_parity import K, _assert_same, _cli_look

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["grpc", "rest"])
def tf_serving_tower(request, serve_setup, tmp_path_factory):
    export_dir = serve_setup[0]
    port = free_port()
    log_path = tmp_path_factory.mktemp(request.param) / "service.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "prediction_service.py"),
                             export_dir, str(port), request.param], stdout=log, stderr=subprocess.STDOUT, env=ENV)
    deadline = time.time() + 120
    while "serving" not in log_path.read_text():
        assert proc.poll() is None and time.time() < deadline, log_path.read_text()[-2000:]
        time.sleep(0.2)
    yield f"{'grpc' if request.param == 'grpc' else 'http'}://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)
    log.close()


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
