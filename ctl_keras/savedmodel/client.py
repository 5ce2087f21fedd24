"""Small clients for TF Serving: REST (`/v1/models/NAME:predict`) and gRPC (PredictionService).

REST uses the row ("instances") format; bytes travel as {"b64": ...}, which TF Serving decodes into
DT_STRING tensors. gRPC sends TensorProtos. Both return {output name: numpy array}, batch first.

  rest_predict("http://localhost:8501", "scene_tower", scene_inputs([jpeg], ["shoes"]))
  grpc_predict("localhost:8500", make_predict_request("product_tower", product_inputs([jpeg])))
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Sequence

import numpy as np


def scene_inputs(images: Sequence[bytes], categories: Sequence[str]) -> dict:
    """Inputs of the scene tower's (and the recommender's) serving_default signature."""
    if len(images) != len(categories):
        raise ValueError(f"{len(images)} images but {len(categories)} categories")
    return {"image_bytes": list(images), "category": list(categories)}


def product_inputs(images: Sequence[bytes]) -> dict:
    return {"image_bytes": list(images)}


# ---------------------------------------------------------------- REST
def _json_value(value):
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def rest_body(inputs: dict, signature: str = "serving_default") -> dict:
    """Columns {name: [values per example]} -> the row-format JSON body TF Serving expects."""
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs have different batch sizes: { {k: len(v) for k, v in inputs.items()} }")
    n = sizes.pop()
    instances = [{k: _json_value(v[i]) for k, v in inputs.items()} for i in range(n)]
    return {"signature_name": signature, "instances": instances}


def predict_url(server: str, model: str, version: int | None = None) -> str:
    path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "")
    return server.rstrip("/") + path + ":predict"


def _from_json(value):
    # TF Serving returns DT_STRING outputs as {"b64": ...} only for names ending in "_bytes";
    # plain strings come back as JSON strings.
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def rest_predict(server: str, model: str, inputs: dict, *, signature: str = "serving_default",
                 version: int | None = None, timeout: float = 30.0,
                 output_name: str = "predictions") -> dict[str, np.ndarray]:
    """POST a predict request; {output: array}. Server errors raise RuntimeError with its message.

    TF Serving drops the output name when a signature has one output; it is then `output_name`.
    """
    data = json.dumps(rest_body(inputs, signature)).encode("utf-8")
    request = urllib.request.Request(predict_url(server, model, version), data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise RuntimeError(f"{model} predict failed (HTTP {err.code}): {detail}") from None
    predictions = body["predictions"]
    # One output: each prediction is the value itself; several: a dict per example.
    if predictions and isinstance(predictions[0], dict) and set(predictions[0]) != {"b64"}:
        names = predictions[0].keys()
        return {k: np.array([_from_json(p[k]) for p in predictions]) for k in names}
    return {output_name: np.array([_from_json(p) for p in predictions])}


# ---------------------------------------------------------------- gRPC
def make_predict_request(model: str, inputs: dict, *, signature: str = "serving_default",
                         version: int | None = None):
    """A tensorflow_serving PredictRequest with one TensorProto per input."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, values in inputs.items():
        array = np.asarray(values)
        if array.dtype.kind in "SUO":
            # object arrays keep bytes intact (a fixed-width "S" array would strip trailing NULs)
            array = np.array(list(values), dtype=object)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def response_to_numpy(response) -> dict[str, np.ndarray]:
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_predict(target: str, request, *, timeout: float = 30.0) -> dict[str, np.ndarray]:
    """Send a PredictRequest to `host:port`; {output: array}. Server errors raise RuntimeError."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as err:
            raise RuntimeError(f"{request.model_spec.name} predict failed ({err.code().name}): {err.details()}") from None
    return response_to_numpy(response)
