"""TF Serving warmup records: `assets.extra/tf_serving_warmup_requests` in every version directory.

TF Serving replays these PredictionLog records at load time so the first real request does not pay
for graph optimisation. We write a few real requests per signature: a JPEG and a PNG for the bytes
signatures, decoded float batches for the `predict_images` ones.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_NAME = "tf_serving_warmup_requests"


def warmup_path(version_dir: str) -> str:
    return os.path.join(version_dir, "assets.extra", WARMUP_NAME)


def example_images(config, seed: int = 0) -> list[bytes]:
    """A JPEG and a PNG, not square and not at the model size, so decode+resize+crop is exercised."""
    rng = np.random.default_rng(seed)
    h, w = config.resize_size + 13, config.resize_size + 41
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    return [tf.io.encode_jpeg(pixels, quality=90).numpy(), tf.io.encode_png(pixels[::-1]).numpy()]


def predict_log(model_name: str, signature: str, inputs: dict) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def example_inputs(config) -> dict:
    """What each registered signature builds its warmup requests from (parts.register)."""
    from ctl_keras.data.pipeline import decode_image, eval_view

    images = example_images(config)
    return {"bytes": images, "categories": list(config.categories),
            "floats": np.stack([eval_view(decode_image(b), config).numpy() for b in images])}


def module_requests(model_name: str, module, config) -> list[prediction_log_pb2.PredictionLog]:
    """The warmup requests of every signature registered on `module`, in registration order."""
    from ctl_keras.savedmodel import parts

    examples = example_inputs(config)
    return [predict_log(model_name, name, inputs)
            for name, (_, warmup) in parts.registered(module).items() for inputs in warmup(examples)]


def write_warmup(version_dir: str, logs: Iterable[prediction_log_pb2.PredictionLog]) -> str:
    path = warmup_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def replay(path: str, loaded) -> list[tuple[str, dict]]:
    """Call every warmup request's signature on a loaded SavedModel; [(signature, outputs)]."""
    results = []
    for log in read_warmup(path):
        request = log.predict_log.request
        fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
        kwargs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        results.append((request.model_spec.signature_name, {k: v.numpy() for k, v in fn(**kwargs).items()}))
    return results
