"""load_trained: a model_dir written the way train.py writes it loads back to the same outputs."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from ctl_keras.config import get_config
from ctl_keras.model.ctl import build_ctl
from ctl_keras.model.run_dir import load_trained, read_config

CONFIG = get_config("synthetic", smoke=True, variant="local", seed=3)


def _write_model_dir(path, models):
    with open(path / "config.json", "w") as f:
        json.dump(models.config.to_dict(), f)
    models.save_heads(str(path / "best.weights.h5"))


def test_load_trained_reproduces_scene_tower(tmp_path):
    """Perturbed heads saved as best.weights.h5 + config.json -> the loaded towers give the same query."""
    models = build_ctl(CONFIG)
    for weight in models.heads.trainable_weights:
        weight.assign(np.asarray(weight) * 1.5)
    _write_model_dir(tmp_path, models)
    images = np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    inputs = {"image": images, "category": np.array([1, 3], "int32")}

    config, loaded = load_trained(str(tmp_path), backbone_weights="none")
    assert config == CONFIG
    np.testing.assert_allclose(np.asarray(loaded.scene_tower(inputs)["query"]),
                               np.asarray(models.scene_tower(inputs)["query"]), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="last.weights.h5 is missing; train one with"):
        load_trained(str(tmp_path), which="last")


def test_missing_pieces_are_named(tmp_path):
    """No dir, no config.json, a broken config.json, a bad `which`: each error names the culprit."""
    with pytest.raises(FileNotFoundError, match="nowhere does not exist; train one with `ctl train"):
        load_trained(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        read_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "synthetic", "bogus": 1}))
    with pytest.raises(ValueError, match="config.json is not a valid ctl_keras config: unknown config keys: bogus"):
        read_config(str(tmp_path))
    with pytest.raises(ValueError, match="which must be one of best, last"):
        load_trained(str(tmp_path), which="first")
