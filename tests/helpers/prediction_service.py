"""A second process answering TF Serving's Predict API for an export directory, for the --tower=grpc://
and --tower=http:// tests where no tensorflow_model_server binary exists. The real SavedModels
(`<export_dir>/<model>/<version>`, latest when the request names none), served either over real gRPC
with the real tensorflow_serving protos (PredictionService/Predict; an InvalidArgumentError becomes
INVALID_ARGUMENT), or over HTTP as TF Serving's REST API does it (`POST /v1/models/NAME[/versions/V]:predict`,
row format: {"signature_name", "instances": [{input: value}]}, bytes as {"b64": ...}; the answer is
{"predictions": [{output: value}]}; an InvalidArgumentError is HTTP 400 {"error": message}).
With SERVED_VERSIONS_FILE (comma-separated versions, read on every request), only those versions
are served, as under a TF Serving version policy; another is answered as TF Serving does: NOT_FOUND
(REST: 404) "Servable not found for request: Specific(NAME, VERSION)".

    python prediction_service.py EXPORT_DIR PORT [grpc|rest] [SERVED_VERSIONS_FILE]
"""

import base64
import json
import os
import re
import sys
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, export_dir, versions_file=None):
        self.export_dir, self.versions_file, self.loaded = export_dir, versions_file, {}

    def _model(self, name, version):
        base = os.path.join(self.export_dir, name)
        version = version or max(int(v) for v in os.listdir(base) if v.isdigit())
        if self.versions_file:
            with open(self.versions_file) as f:
                served = {int(v) for v in f.read().split(",") if v.strip()}
            if version not in served:
                raise FileNotFoundError(f"Servable not found for request: Specific({name}, {version})")
        if (name, version) not in self.loaded:
            self.loaded[(name, version)] = tf.saved_model.load(os.path.join(base, str(version)))
        return self.loaded[(name, version)]

    def Predict(self, request, context):
        spec = request.model_spec
        try:
            model = self._model(spec.name, spec.version.value if spec.HasField("version") else None)
            fn = model.signatures[spec.signature_name or "serving_default"]
            out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
        except (OSError, ValueError, KeyError) as err:
            context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except tf.errors.InvalidArgumentError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, err.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        for name, value in out.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


class RestHandler(BaseHTTPRequestHandler):
    service: PredictionService
    PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        match = self.PATH.match(self.path)
        if not match:
            return self._answer(404, {"error": f"no route {self.path}"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        instances = body["instances"]
        try:
            model = self.service._model(match.group(1), int(match.group(2)) if match.group(2) else None)
            fn = model.signatures[body.get("signature_name", "serving_default")]
            columns = {k: tf.constant([_from_json(row[k]) for row in instances]) for k in instances[0]}
            out = {k: v.numpy().tolist() for k, v in fn(**columns).items()}
        except (OSError, ValueError, KeyError) as err:
            return self._answer(404, {"error": str(err)})
        except tf.errors.InvalidArgumentError as err:
            return self._answer(400, {"error": err.message})
        self._answer(200, {"predictions": [{k: v[i] for k, v in out.items()} for i in range(len(instances))]})

    def log_message(self, *args):
        pass


def main():
    export_dir, port = sys.argv[1], int(sys.argv[2])
    service = PredictionService(export_dir, sys.argv[4] if len(sys.argv) > 4 else None)
    if len(sys.argv) > 3 and sys.argv[3] == "rest":
        RestHandler.service = service
        server = ThreadingHTTPServer(("127.0.0.1", port), RestHandler)
        print("serving", flush=True)
        server.serve_forever()
        return
    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_receive_message_length", 64 << 20)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
