"""The scene tower, called the way the service needs it: B scene photos -> every category's query.

In process (retrieval.scene_tower.SceneTower, the wrapper `recommend look` and the Python API use, on
the version the index was embedded with) or behind TF Serving (`grpc://host:8500` / `http://host:8501`,
through ctl_keras/savedmodel/client.py, pinned to that version). Either way the call is the scene
tower's `complete_look` signature: the backbone once per image, then query [B, C, d] and attention [B, C, g, g] for the model's C categories in its order.
"""

from __future__ import annotations

import numpy as np

from ctl_keras.retrieval.scene_tower import BadImage, SceneTower, human_reason

MODEL = "scene_tower"


class TowerUnavailable(RuntimeError):
    """The tower cannot answer (TF Serving down, or not serving the index's version): 503, one line."""


def version_not_served(target: str, version: int) -> TowerUnavailable:
    return TowerUnavailable(
        f"TF Serving at {target} does not serve {MODEL} version {version}, which the index was embedded with: "
        "keep it loaded (models.config: model_version_policy { latest { num_versions: 2 } }) or re-index "
        "the catalog (ctl recommend index)")


class ServingTower:
    """TF Serving's scene_tower model at `target` (grpc://host:port or http(s)://host:port)."""

    def __init__(self, target: str, version: int, timeout: float = 30.0):
        self.target, self.version, self.timeout = target, version, timeout

    def __call__(self, images: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        from ctl_keras.savedmodel import client

        inputs = {"image_bytes": list(images)}
        try:
            if self.target.startswith("grpc://"):
                request = client.make_predict_request(MODEL, inputs, signature="complete_look", version=self.version)
                out = client.grpc_predict(self.target[len("grpc://"):], request, timeout=self.timeout)
            else:
                out = client.rest_predict(self.target, MODEL, inputs, signature="complete_look",
                                          version=self.version, timeout=self.timeout)
        except RuntimeError as err:
            message = str(err)
            if "INVALID_ARGUMENT" in message or "HTTP 400" in message:
                raise BadImage(human_reason(message.partition("): ")[2] or message)) from None
            # TF Serving's answer for a version its policy unloaded (gRPC NOT_FOUND, REST 404)
            if "Servable not found" in message or "(NOT_FOUND)" in message or "(HTTP 404)" in message:
                raise version_not_served(self.target, self.version) from None
            raise TowerUnavailable(f"scene tower at {self.target} failed: {' '.join(message.split())[:300]}") from None
        return np.asarray(out["query"], np.float32), np.asarray(out["attention"], np.float32)


def open_tower(spec: str | None, version_dir: str, version: int):
    """spec None/'' or 'savedmodel': in process; grpc://... or http(s)://...: TF Serving."""
    if not spec or spec == "savedmodel":
        return SceneTower(version_dir, version)
    if spec.startswith(("grpc://", "http://", "https://")):
        return ServingTower(spec, version)
    raise ValueError(f"--tower={spec}: expected savedmodel, grpc://host:port or http://host:port")
