"""The scene tower, called the way the service needs it: B scene photos -> every category's query.

In process (`tf.saved_model.load` of the version the index was embedded with) or behind TF Serving
(`grpc://host:8500` / `http://host:8501`, through ctl_keras/serving/client.py, pinned to that
version). Either way the call is the scene tower's `complete_look` signature: the backbone once per
image, then query [B, C, d] and attention [B, C, g, g] for the model's C categories in its order.
"""

from __future__ import annotations

import numpy as np

MODEL = "scene_tower"


class BadImage(ValueError):
    """The tower refused an image (corrupt, truncated or too large): the client's fault (422)."""


class InProcessTower:
    def __init__(self, version_dir: str, version: int):
        import tensorflow as tf

        self.version = version
        self._fn = tf.saved_model.load(version_dir).signatures["complete_look"]

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        try:
            out = self._fn(image_bytes=tf.constant(images, tf.string))
        except tf.errors.InvalidArgumentError as err:
            raise BadImage(_last_line(err.message)) from None
        return out["query"].numpy(), out["attention"].numpy()


class ServingTower:
    """TF Serving's scene_tower model at `target` (grpc://host:port or http(s)://host:port)."""

    def __init__(self, target: str, version: int, timeout: float = 30.0):
        self.target, self.version, self.timeout = target, version, timeout

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        from ctl_keras.serving import client

        inputs = {"image_bytes": list(images)}
        try:
            if self.target.startswith("grpc://"):
                request = client.make_predict_request(MODEL, inputs, signature="complete_look", version=self.version)
                out = client.grpc_predict(self.target[len("grpc://"):], request, timeout=self.timeout)
            else:
                out = client.rest_predict(self.target, MODEL, inputs, signature="complete_look",
                                          version=self.version, timeout=self.timeout)
        except RuntimeError as err:
            if "INVALID_ARGUMENT" in str(err) or "HTTP 400" in str(err):
                raise BadImage(_last_line(str(err))) from None
            raise
        return np.asarray(out["query"], np.float32), np.asarray(out["attention"], np.float32)


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "image cannot be decoded")[:200]


def open_tower(spec: str | None, version_dir: str, version: int):
    """spec None/'' or 'savedmodel': in process; grpc://... or http(s)://...: TF Serving."""
    if not spec or spec == "savedmodel":
        return InProcessTower(version_dir, version)
    if spec.startswith(("grpc://", "http://", "https://")):
        return ServingTower(spec, version)
    raise ValueError(f"--tower={spec}: expected savedmodel, grpc://host:port or http://host:port")
