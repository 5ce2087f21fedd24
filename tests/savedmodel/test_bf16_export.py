"""export --backbone_precision: float32 writes what it wrote before (same graph inputs, same variables, same
outputs), bfloat16 keeps float32 signatures and records the measured agreement, and the floor refuses."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.model import agreement, precision
from ctl_keras.savedmodel import exporter, precision_check
from ctl_keras.savedmodel import signatures as sig


def _images(config, n=3):
    return np.random.default_rng(0).uniform(0, 255, (n, config.image_size, config.image_size, 3)).astype(np.float32)


@pytest.mark.slow
def test_float32_export_is_todays(untrained_model, tmp_path):
    """The default writes the module today's call (no backbone argument) builds: same variables, bit-equal
    outputs; the metadata only says float32 (no agreement: nothing was compared)."""
    config, models, _ = untrained_model
    dirs = exporter.export_models(models, config, str(tmp_path))
    meta = exporter.read_meta(dirs["scene_tower"])
    assert meta["backbone_precision"] == "float32" and "backbone_agreement" not in meta
    today = sig.scene_tower_module(models.scene_tower, config)
    loaded = tf.saved_model.load(dirs["scene_tower"])
    assert len(loaded.model_variables) == len(today.model_variables) == len(
        {id(v) for v in models.scene_tower.variables})
    images, cats = tf.constant(_images(config)), tf.constant([config.categories[0]] * 3)
    want = today.predict_images(images, cats)
    got = loaded.signatures["predict_images"](images=images, category=cats)
    for name in sig.SCENE_OUTPUTS:
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy())


@pytest.mark.slow
def test_bf16_export_float32_signatures_and_recorded_agreement(untrained_model, synthetic_data, tmp_path):
    config, models, _ = untrained_model
    _, data_dir = synthetic_data
    dirs = exporter.export_models(models, config, str(tmp_path), backbone_precision="bfloat16", data_dir=data_dir)
    meta = exporter.read_meta(dirs["product_tower"])
    a = meta["backbone_agreement"]
    assert meta["backbone_precision"] == "bfloat16" and a["sample"].startswith("test split of")
    assert 0.0 < a["cosine_min"] <= a["query_cosine_median"] <= 1.0 + 1e-9 and 0 <= a["top_k_overlap_min"] <= 10
    assert a["queries"] > 0 and a["products"] > 0 and a["max_abs_delta_d_star"] >= 0
    loaded = tf.saved_model.load(dirs["scene_tower"])
    # The saved variables are the folded bfloat16 backbone's + the heads': one backbone, not two.
    norms = [v for v in models.backbone.variables if "_bn/" in v.path]
    assert len(loaded.model_variables) == len({id(v) for v in models.scene_tower.variables}) - len(norms) > 0
    images = tf.constant(_images(config))
    out = loaded.signatures["predict_images"](images=images, category=tf.constant([config.categories[0]] * 3))
    assert all(out[name].dtype == tf.float32 for name in sig.SCENE_OUTPUTS)
    want = models.scene_tower({"image": images, "category": tf.zeros([3], tf.int32)}, training=False)["query"]
    cos = np.sum(out["query"].numpy() * want.numpy(), 1) / (
        np.linalg.norm(out["query"], axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.9
    product = tf.saved_model.load(dirs["product_tower"]).signatures["predict_images"](images=images)
    assert product["product_embedding"].dtype == tf.float32


@pytest.mark.slow
def test_floor_refuses_and_writes_nothing(untrained_model, tmp_path):
    config, models, _ = untrained_model
    with pytest.raises(ValueError, match="export refused: the bfloat16 backbone agrees with float32 less than"):
        exporter.export_models(models, config, str(tmp_path / "e"), backbone_precision="bfloat16",
                               min_agreement=1.0)
    assert not os.path.exists(tmp_path / "e") or not any(p.name == "saved_model.pb"
                                                         for p in (tmp_path / "e").rglob("*"))


@pytest.mark.slow
def test_a_floor_outside_the_cosine_range_is_refused_before_any_work(untrained_model, tmp_path):
    """A floor above 1 refused every export after the bf16 check ran, one below -1 none: both are one line
    before anything runs, float32 exports included."""
    config, models, _ = untrained_model
    for floor in (1.5, -2.0):
        with pytest.raises(ValueError, match=r"^--min_backbone_agreement must be a cosine in \[-1, 1\]"):
            exporter.export_models(models, config, str(tmp_path / "e"), min_agreement=floor)
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_float32_against_itself_measures_perfect_agreement(untrained_model):
    """The check's own arithmetic: the same backbone on both sides gives cosine 1, 10/10, |delta d*| 0."""
    config, models, _ = untrained_model
    sample = agreement.dataset_sample(config, None, n=12)
    assert sample["source"].startswith("synthetic")
    a = precision_check.measure(models, models.backbone, sample)
    assert a["cosine_min"] == pytest.approx(1.0, abs=1e-6) and a["max_abs_delta_d_star"] == 0.0
    assert a["top_k_overlap_min"] == 10


def test_resolve_float32_builds_no_second_backbone(untrained_model, monkeypatch):
    config, models, _ = untrained_model
    monkeypatch.setattr(precision, "bf16_backbone", lambda *_: pytest.fail("built a bfloat16 backbone"))
    assert exporter._bf16_backbone(models, config, "float32", 0.99, None, None) == (None, {"backbone_precision": "float32"})
