"""Load a trained CTL model from a model_dir written by `ctl train`."""

from __future__ import annotations

import json
import os

from ctl_keras.config import Config
from ctl_keras.model.ctl import CTLModels, build_ctl

WHICH = ("best", "last")
_TRAIN_HINT = "train one with `ctl train --dataset=NAME --model_dir=DIR`"


def read_config(model_dir: str) -> Config:
    """The Config stored in <model_dir>/config.json."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model_dir {model_dir} does not exist; {_TRAIN_HINT}")
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing, so {model_dir} is not a trained model_dir; {_TRAIN_HINT}")
    try:
        with open(path) as f:
            values = json.load(f)
        return Config.from_dict(values)
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"{path} is not a valid ctl_keras config: {reason}") from None


def load_trained(model_dir: str, backbone_weights: str | None = None, which: str = "best") -> tuple[Config, CTLModels]:
    """(config, models) with the head weights of <model_dir>/{best|last}.weights.h5 loaded.

    `backbone_weights` overrides the config's (e.g. "none" on a machine without the ImageNet file).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    config = read_config(model_dir)
    weights_path = os.path.join(os.fspath(model_dir), f"{which}.weights.h5")
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"{weights_path} is missing; {_TRAIN_HINT} (best is written at the first validation, "
            f"last after each epoch)"
        )
    if backbone_weights is not None:
        from ctl_keras.config import check_backbone_weights  # noqa: PLC0415

        check_backbone_weights(backbone_weights)
        config = config.replace(backbone_weights=backbone_weights)
    models = build_ctl(config)
    models.load_heads(weights_path)
    return config, models
