"""REST and gRPC clients against TEST DOUBLES of TF Serving (the real binary cannot be installed here).

The REST double is a loopback ThreadingHTTPServer that runs the exported SavedModels behind the
`/v1/models/NAME:predict` row-format contract; the gRPC double is a grpcio server on 127.0.0.1
implementing tensorflow_serving's PredictionService with the same SavedModels. They check the
clients' requests and decoding, not TF Serving itself.
"""

import base64
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from ctl_keras.config import get_config
from ctl_keras.model.ctl import build_ctl
from ctl_keras.savedmodel import client, exporter, warmup

URL = re.compile(r"^/v1/models/(\w+)(?:/versions/(\d+))?:predict$")


def _decode(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return [_decode(v) for v in value] if isinstance(value, list) else value


def _json_out(array):
    if array.dtype == object:
        return [_json_out(a) if isinstance(a, np.ndarray) else a.decode() for a in array]
    return array.tolist()


def _message(err):
    """The assertion line of a TF error (TF Serving returns the whole text; one line is enough here)."""
    lines = str(err).strip().splitlines() or [repr(err)]
    return next((line for line in lines if "assertion failed" in line), lines[0])


def _rest_double(loaded):
    """TEST DOUBLE of TF Serving's REST predict API, backed by loaded SavedModels."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            match = URL.match(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                if not match or match.group(1) not in loaded:
                    raise KeyError(f"Servable not found for request: {self.path}")
                fn = loaded[match.group(1)].signatures[body.get("signature_name", "serving_default")]
                rows = [{k: _decode(v) for k, v in row.items()} for row in body["instances"]]
                kwargs = {k: tf.constant([r[k] for r in rows]) for k in rows[0]}
                out = {k: _json_out(v.numpy()) for k, v in fn(**kwargs).items()}
                names = sorted(out)
                preds = out[names[0]] if len(names) == 1 else [
                    {k: out[k][i] for k in names} for i in range(len(rows))]
                status, reply = 200, {"predictions": preds}
            except Exception as err:  # TF Serving answers 400 with the error text
                status, reply = 400, {"error": _message(err)}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


class _GrpcDouble(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TEST DOUBLE of TF Serving's gRPC PredictionService.Predict, backed by loaded SavedModels."""

    def __init__(self, loaded):
        self.loaded = loaded

    def Predict(self, request, context):
        model = self.loaded.get(request.model_spec.name)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
        fn = model.signatures[request.model_spec.signature_name or "serving_default"]
        try:
            out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        except tf.errors.InvalidArgumentError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(err))
        response = predict_pb2.PredictResponse()
        for k, v in out.items():
            response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
        return response


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    config = get_config("synthetic", smoke=True)
    dirs = exporter.export_models(build_ctl(config), config, str(tmp_path_factory.mktemp("export")))
    loaded = {name: tf.saved_model.load(path) for name, path in dirs.items()}
    http = _rest_double(loaded)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_GrpcDouble(loaded), rpc)
    port = rpc.add_insecure_port("127.0.0.1:0")
    rpc.start()
    images = warmup.example_images(config, seed=3)
    yield loaded, f"http://127.0.0.1:{http.server_port}", f"127.0.0.1:{port}", images
    http.shutdown()
    rpc.stop(None)


def _direct(loaded, model, **inputs):
    return {k: v.numpy() for k, v in loaded[model].signatures["serving_default"](
        **{k: tf.constant(v) for k, v in inputs.items()}).items()}


def test_rest_body_is_the_row_format_with_b64():
    """Two instances, bytes as {"b64": base64}: b"\\xff\\xd8" -> "/9g=" (hand-encoded)."""
    body = client.rest_body(client.scene_inputs([b"\xff\xd8", b"ab"], ["shoes", "tops"]))
    assert body == {"signature_name": "serving_default", "instances": [
        {"image_bytes": {"b64": "/9g="}, "category": "shoes"},
        {"image_bytes": {"b64": "YWI="}, "category": "tops"}]}
    assert client.predict_url("http://h:8501/", "scene_tower", 3) == "http://h:8501/v1/models/scene_tower/versions/3:predict"
    with pytest.raises(ValueError, match="2 images but 1 categories"):
        client.scene_inputs([b"a", b"b"], ["shoes"])


@pytest.mark.slow
def test_rest_scene_and_product_towers(servers):
    loaded, url, _, images = servers
    got = client.rest_predict(url, "scene_tower", client.scene_inputs(images, ["shoes", "tops"]))
    want = _direct(loaded, "scene_tower", image_bytes=images, category=["shoes", "tops"])
    assert sorted(got) == ["attention", "query", "scene_embedding"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6)
    got = client.rest_predict(url, "product_tower", client.product_inputs(images), version=1,
                              output_name="product_embedding")
    np.testing.assert_allclose(got["product_embedding"], _direct(loaded, "product_tower", image_bytes=images)
                               ["product_embedding"], atol=1e-6)


def test_rest_error_carries_the_server_message(servers):
    _, url, _, images = servers
    with pytest.raises(RuntimeError, match=r"scene_tower predict failed \(HTTP 400\).*unknown category"):
        client.rest_predict(url, "scene_tower", client.scene_inputs(images[:1], ["dresses"]))


def test_grpc_request_proto():
    request = client.make_predict_request("scene_tower", client.scene_inputs([b"x", b"y"], ["shoes", "tops"]),
                                          signature="serving_default", version=2)
    assert (request.model_spec.name, request.model_spec.signature_name, request.model_spec.version.value) == (
        "scene_tower", "serving_default", 2)
    assert request.inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in request.inputs["image_bytes"].tensor_shape.dim] == [2]
    assert list(request.inputs["category"].string_val) == [b"shoes", b"tops"]


def test_grpc_predict_against_the_double(servers):
    loaded, _, target, images = servers
    got = client.grpc_predict(target, client.make_predict_request(
        "scene_tower", client.scene_inputs(images, ["pants", "shoes"])))
    want = _direct(loaded, "scene_tower", image_bytes=images, category=["pants", "shoes"])
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    floats = np.zeros((1, 64, 64, 3), np.float32)
    got = client.grpc_predict(target, client.make_predict_request(
        "product_tower", {"images": floats}, signature="predict_images"))
    assert got["product_embedding"].shape == (1, 16)
    with pytest.raises(RuntimeError, match=r"INVALID_ARGUMENT.*not a JPEG or PNG"):
        client.grpc_predict(target, client.make_predict_request("product_tower", client.product_inputs([b"GIF89a"])))
