"""The feature cache under --backbone_precision: float32 keeps today's key and directory (old caches stay
valid), bfloat16 gets its own key and directory, records its agreement, and the floor refuses."""

import json
import os

import keras
import numpy as np
import pytest

from ctl_keras.feature_cache import FeatureCache, default_cache_dir
from ctl_keras.feature_cache import build as cache_build
from ctl_keras.model.backbone import build_backbone
from ctl_keras.training.run_options import RunOptions


def test_key_and_directory(synthetic_data):
    config, data_dir = synthetic_data
    f32 = cache_build.identity(config, data_dir, False)
    assert cache_build.identity(config, data_dir, False, "float32") == f32 and "backbone_precision" not in f32
    assert cache_build.identity(config, data_dir, False, "bfloat16") == {**f32, "backbone_precision": "bfloat16"}
    assert default_cache_dir(config, data_dir) == default_cache_dir(config, data_dir, False, "float32")
    assert default_cache_dir(config, data_dir, True, "bfloat16").endswith("views_none_full_bf16")


def test_run_options_need_the_cache_for_bf16():
    with pytest.raises(ValueError, match="needs --feature_cache"):
        RunOptions(data_dir="d", model_dir="m", feature_cache=False, backbone_precision="bfloat16")
    with pytest.raises(ValueError, match="float32, bfloat16 or auto"):
        RunOptions(data_dir="d", model_dir="m", backbone_precision="half")
    recorded = RunOptions(data_dir="d", model_dir="m", feature_cache=True, backbone_precision="bfloat16").recorded()
    assert recorded["backbone_precision"] == "bfloat16"


@pytest.mark.slow
def test_bf16_cache_records_agreement_and_floor_refuses(synthetic_data, tmp_path):
    config, data_dir = synthetic_data
    keras.utils.set_random_seed(0)
    backbone = build_backbone(config.image_size, config.local_grid, "none")
    with pytest.raises(ValueError, match="feature cache refused"):
        FeatureCache.build_or_load(config, data_dir, tmp_path / "refused", backbone, backbone_precision="bfloat16",
                                   min_agreement=1.01)
    assert not os.path.exists(tmp_path / "refused")
    cache = FeatureCache.build_or_load(config, data_dir, tmp_path / "bf16", backbone, backbone_precision="bfloat16")
    with open(tmp_path / "bf16" / "manifest.json") as f:
        manifest = json.load(f)
    a = manifest["backbone_agreement"]
    assert cache.identity["backbone_precision"] == "bfloat16" and 0 < a["cosine_min"] <= 1 + 1e-9
    assert a["queries"] > 0 and a["top_k_overlap_min"] <= 10
    # float32 asked of the bfloat16 directory: rebuilt, never mixed
    f32 = FeatureCache.build_or_load(config, data_dir, tmp_path / "bf16", backbone)
    assert "backbone_precision" not in f32.identity and "backbone_agreement" not in f32.manifest
    assert np.asarray(f32.scenes("test")["pool5"]).dtype == np.float16


def test_train_resolves_precision_from_the_run_and_auto(monkeypatch):
    """None: as the run being resumed recorded it, else float32; auto: resolved on this machine and recorded
    resolved; the image path never runs bfloat16."""
    from ctl_keras.model import precision
    from ctl_keras.training import checkpointing, loop

    recorded = {}
    monkeypatch.setattr(checkpointing, "recorded_option", lambda _dir, name, default: recorded.get(name, default))
    monkeypatch.setattr(precision, "resolve", lambda choice: (
        ("bfloat16" if choice == "auto" else choice), "test"))
    opts = lambda p, cache=True: RunOptions(data_dir="d", model_dir="m", feature_cache=cache,  # noqa: E731
                                            backbone_precision=p)
    assert loop._resolve_backbone_precision(opts(None)).backbone_precision == "float32"
    recorded["backbone_precision"] = "bfloat16"
    assert loop._resolve_backbone_precision(opts(None)).backbone_precision == "bfloat16"
    assert loop._resolve_backbone_precision(opts("auto")).recorded()["backbone_precision"] == "bfloat16"
    assert loop._resolve_backbone_precision(opts("auto", cache=False)).backbone_precision == "float32"
