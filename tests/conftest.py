"""Shared fixtures: one tiny built synthetic dataset for the whole test session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

# Small enough to build in a few seconds, big enough that every split has scenes and val/test
# have questions (48 scenes -> 38/5/5 scenes, about 200 pairs).
SYNTHETIC_KWARGS = {"num_scenes": 48, "scene_size": 96, "product_size": 64, "seed": 0}


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """(config, data_dir): `get_config("synthetic", smoke=True)` built into a session temp dir."""
    from ctl_keras.builder import build as build_dataset
    from ctl_keras.config import get_config

    config = get_config("synthetic", smoke=True)
    data_dir = tmp_path_factory.mktemp("synthetic_data")
    manifest = build_dataset.build(config, data_dir, synthetic_kwargs=dict(SYNTHETIC_KWARGS), workers=1,
                                   log=lambda message: None)
    for split in ("train", "val", "test"):
        assert manifest["splits"][split]["pairs"] > 0, split
    for split in ("val", "test"):
        assert manifest["splits"][split]["questions"] > 0, split
    return config, str(data_dir)


@pytest.fixture(scope="session")
def untrained_model(synthetic_data, tmp_path_factory):
    """(config, models, model_dir): a seeded, untrained smoke model saved the way train.py saves one
    (config.json + best.weights.h5; no results.json). Tests read it; write into copies, not into it."""
    import json

    from ctl_keras.model.ctl import build_ctl

    config, _ = synthetic_data
    models = build_ctl(config)
    model_dir = tmp_path_factory.mktemp("untrained_model")
    models.save_heads(str(model_dir / "best.weights.h5"))
    (model_dir / "config.json").write_text(json.dumps(config.to_dict()))
    return config, models, str(model_dir)
