"""The scene tower SavedModel called on encoded photos: the one wrapper `recommend query/look`, the
Python API and the look service (in process) share.

`SceneTower(version_dir)` loads one exported version; `call(signature, **inputs)` runs a signature on
string tensors (image bytes, category names) and gives numpy arrays; `tower(images)` is the service's
form, the `complete_look` signature: (query [B, C, d], attention [B, C, g, g]) for the model's C
categories in its order. An image the tower cannot decode is a BadImage whose message is the first
human line of TensorFlow's error (`detail` keeps the whole message).
"""

from __future__ import annotations

import os
import re

import numpy as np

from ctl_keras.data.encoding import looks_like_image


class BadImage(ValueError):
    """The tower refused an image (corrupt, truncated or too large): the client's fault (422)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


class SceneTower:
    def __init__(self, version_dir: str, version: int | None = None):
        import tensorflow as tf

        self.version = version
        self.signatures = tf.saved_model.load(version_dir).signatures

    def call(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            out = self.signatures[signature](**{k: tf.constant(v, tf.string) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as err:
            raise BadImage(human_reason(err.message), err.message) from None
        return {k: v.numpy() for k, v in out.items()}

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        out = self.call("complete_look", image_bytes=list(images))
        return out["query"], out["attention"]


_GRAPH_NOISE = re.compile(r"\[\[\{\{node [^\]]*\]\]|\[Op:[^\]]*\]|^\w+(?:::\w+)+ failed\.\s*")
_NOT_HUMAN = ("Graph execution error", "Detected at node", "<stack traces")


def human_reason(message: str) -> str:
    """The first human sentence of a TensorFlow error: graph internals ([[{{node ...}}]], [Op:...],
    'jpeg::Uncompress failed.', the 'Detected at node' preamble) and assertion brackets removed."""
    for line in message.splitlines():
        line = _GRAPH_NOISE.sub("", line.strip()).strip()
        if not line or line.startswith(_NOT_HUMAN):
            continue
        if line.startswith("assertion failed:"):
            line = " ".join(re.findall(r"\[([^\]]*)\]", line)) or line
        return line[:200]
    return "the image cannot be decoded"


def read_scene(scene: str) -> bytes:
    """The photo's bytes; one-line errors for a missing file or one that is no JPEG/PNG."""
    if not os.path.isfile(scene):
        raise FileNotFoundError(f"scene image {scene} does not exist")
    with open(scene, "rb") as f:
        image = f.read()
    if not looks_like_image(image):
        raise ValueError(f"scene {scene} is not a JPEG or PNG image")
    return image


def scene_bytes(scene) -> tuple[str, bytes]:
    """(name for error messages, encoded JPEG/PNG bytes) for a path, encoded bytes or an HxWx3 uint8 array."""
    if isinstance(scene, (str, os.PathLike)):
        return os.fspath(scene), read_scene(os.fspath(scene))
    if isinstance(scene, (bytes, bytearray, memoryview)):
        data = bytes(scene)
        if not looks_like_image(data):
            raise ValueError("scene bytes are not a JPEG or PNG image")
        return "<bytes>", data
    if isinstance(scene, np.ndarray):
        if scene.ndim != 3 or scene.shape[-1] != 3 or scene.dtype != np.uint8:
            raise ValueError(f"scene array must be HxWx3 uint8, got shape {scene.shape} dtype {scene.dtype}")
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(scene).save(buffer, format="PNG")
        return "<array>", buffer.getvalue()
    raise TypeError(f"scene must be a path, JPEG/PNG bytes or an HxWx3 uint8 array, not {type(scene).__name__}")
