"""Frozen-feature cache: contents equal the backbone on the same view, epochs are deterministic,
negatives follow the rule, a config change rebuilds, an interrupted build leaves nothing."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.data import pipeline
from ctl_keras.feature_cache import build as cache_build
from ctl_keras.feature_cache import FeatureCache
from ctl_keras.model.backbone import build_backbone


@pytest.fixture(scope="module")
def backbone(synthetic_data):
    config, _ = synthetic_data
    keras.utils.set_random_seed(0)
    return build_backbone(config.image_size, config.local_grid, "none")


@pytest.fixture(scope="module")
def cache(synthetic_data, backbone, tmp_path_factory):
    config, data_dir = synthetic_data
    return FeatureCache.build_or_load(config, data_dir, tmp_path_factory.mktemp("fc") / "cache", backbone)


def _first_examples(ds, n):
    return [ex for ex in ds.take(n)]


@pytest.mark.slow
def test_val_features_equal_backbone_on_center_view(synthetic_data, backbone, cache):
    """Row i of the val cache is the backbone's output on eval_view(scene_i) (float16: ~1e-3 relative)."""
    config, data_dir = synthetic_data
    exs = _first_examples(pipeline.raw_pairs(data_dir, "val"), 3)
    images = tf.stack([pipeline.eval_view(pipeline.decode_image(ex["scene_jpeg"]), config) for ex in exs])
    want = backbone(images, training=False)
    got = cache.scenes("val")
    assert list(got["pair_ids"][:3]) == [int(ex["pair_id"]) for ex in exs]
    for key in ("pool5", "local"):
        np.testing.assert_allclose(np.asarray(got[key][:3], np.float32), want[key].numpy(), rtol=1e-2, atol=1e-2)
    prod = _first_examples(pipeline.raw_products(data_dir, "val"), 2)
    images = tf.stack([pipeline.eval_view(pipeline.decode_image(ex["product_jpeg"]), config) for ex in prod])
    np.testing.assert_allclose(np.asarray(cache.products("val")["pool5"][:2], np.float32),
                               backbone(images, training=False)["pool5"].numpy(), rtol=1e-2, atol=1e-2)


def test_train_views_equal_backbone_on_train_view(synthetic_data, backbone, cache):
    """View v of train pair i is the backbone on train_view(scene_i, seed(config.seed, v, pair_id))."""
    config, data_dir = synthetic_data
    ex = _first_examples(pipeline.raw_pairs(data_dir, "train"), 1)[0]
    image = pipeline.decode_image(ex["scene_jpeg"])
    views = tf.stack([pipeline.train_view(image, cache_build.view_seed(config, 0, v, ex["pair_id"]), config)
                      for v in range(config.num_views)])
    want = backbone(views, training=False)
    s = cache.split("train")
    assert s["scene_pool5"].shape[1] == config.num_views
    np.testing.assert_allclose(np.asarray(s["scene_pool5"][0], np.float32), want["pool5"].numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(np.asarray(s["scene_local"][0], np.float32), want["local"].numpy(), rtol=1e-2, atol=1e-2)
    # Views really differ (random crop/mirror; 9x9 offsets x 2 mirrors can collide by chance).
    differs = np.any(s["scene_pool5"][:, 0] != s["scene_pool5"][:, 1], axis=1)
    assert differs.mean() > 0.8


def _epoch(cache, config, epoch_index, batch_size=5):
    batches = list(cache.train_dataset(config, epoch_index, batch_size).as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_train_dataset_deterministic_per_seed_and_epoch(synthetic_data, cache):
    config, _ = synthetic_data
    a, b, c = _epoch(cache, config, 0), _epoch(cache, config, 0), _epoch(cache, config, 1)
    assert set(a) == {"scene_pool5", "scene_local", "positive_pool5", "negative_pool5", "category"}
    assert a["scene_local"].dtype == np.float32 and a["category"].dtype == np.int32
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["scene_pool5"], c["scene_pool5"])
    d = _epoch(cache, config.replace(seed=config.seed + 1), 0)
    assert not np.array_equal(a["scene_pool5"], d["scene_pool5"])
    n = len(cache.split("train")["pair_ids"])
    assert len(a["category"]) == n  # every pair once per epoch
    spec = cache.train_dataset(config, 0, 5).element_spec  # static shapes: one trace for every batch
    g = config.local_grid
    assert spec["scene_local"].shape.as_list() == [None, g, g, 1024]
    assert spec["negative_pool5"].shape.as_list() == [None, 2048] and spec["category"].shape.as_list() == [None]


def test_grouped_train_dataset_stacks_the_full_batches_in_order(synthetic_data, cache):
    """group=N: the same full batches as group=0, N per element on a new leading axis, the partial
    batch dropped; the last group holds the remaining full batches."""
    config, _ = synthetic_data
    singles = [b for b in cache.train_dataset(config, 2, 5).as_numpy_iterator() if len(b["category"]) == 5]
    groups = list(cache.train_dataset(config, 2, 5, group=3).as_numpy_iterator())
    assert [len(g["category"]) for g in groups] == [3] * (len(singles) // 3) + ([len(singles) % 3] if len(singles) % 3 else [])
    for key in singles[0]:
        np.testing.assert_array_equal(np.concatenate([g[key] for g in groups]), np.stack([b[key] for b in singles]))
    spec = cache.train_dataset(config, 0, 5, group=3).element_spec
    assert spec["scene_local"].shape.as_list() == [None, 5, config.local_grid, config.local_grid, 1024]
    with pytest.raises(ValueError, match="group must be >= 0"):
        cache.train_dataset(config, 0, 5, group=-1)


def test_negative_rule(synthetic_data, cache):
    """Negative: a train product of the positive's category, never the positive; all gathered rows agree."""
    config, _ = synthetic_data
    s = cache.split("train")
    seen_negatives = set()
    for epoch_index in range(5):
        plan = cache.epoch_plan(config.seed, epoch_index)
        assert np.all(plan["negative_row"] != plan["positive_row"])
        assert np.array_equal(s["product_category"][plan["negative_row"]], plan["category"])
        assert np.array_equal(s["product_category"][plan["positive_row"]], plan["category"])
        assert sorted(plan["scene_row"]) == list(range(len(s["pair_ids"])))
        seen_negatives.update(plan["negative_row"].tolist())
    assert len(seen_negatives) > 2  # negatives are redrawn, not fixed
    batch = _epoch(cache, config, 3)
    plan = cache.epoch_plan(config.seed, 3)
    want = np.asarray(s["product_pool5"][plan["negative_row"], plan["negative_view"]], np.float32)
    np.testing.assert_array_equal(batch["negative_pool5"], want)


def test_reload_and_rebuild_on_config_mismatch(synthetic_data, backbone, cache, monkeypatch, tmp_path):
    config, data_dir = synthetic_data
    calls = []
    real_build = cache_build.build
    monkeypatch.setattr(cache_build, "build", lambda *a, **k: (calls.append(a), real_build(*a, **k)))
    same = FeatureCache.build_or_load(config, data_dir, cache.cache_dir, backbone)
    assert calls == [] and same.identity == cache.identity
    # A copy of the 2-view cache asked for with 1 view must be rebuilt, not silently reused.
    copy = tmp_path / "copy"
    shutil.copytree(cache.cache_dir, copy)
    rebuilt = FeatureCache.build_or_load(config.replace(num_views=1), data_dir, copy, backbone)
    assert len(calls) == 1 and rebuilt.num_views == 1
    assert rebuilt.split("train")["scene_pool5"].shape[1] == 1
    with open(copy / "manifest.json") as f:
        assert json.load(f)["identity"]["num_views"] == 1
    assert sorted(os.listdir(tmp_path)) == ["copy"]  # no .old-* or .tmp-* left behind


def test_refuses_foreign_directory_and_mismatched_views(synthetic_data, backbone, cache, tmp_path):
    config, data_dir = synthetic_data
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and has no manifest"):
        FeatureCache.build_or_load(config, data_dir, tmp_path, backbone)
    with pytest.raises(ValueError, match="num_views"):
        cache.train_dataset(config.replace(num_views=3), 0, 4)
    with pytest.raises(ValueError, match="augmented views"):
        cache.scenes("train")


@pytest.mark.slow
def test_interrupted_build_leaves_no_cache(synthetic_data, backbone, tmp_path, monkeypatch):
    """An exception after the train scenes are written (mid-build) leaves neither a cache nor a temp dir."""
    config, data_dir = synthetic_data
    real = cache_build._run_backbone
    calls = []

    def fail_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        return real(*args)

    monkeypatch.setattr(cache_build, "_run_backbone", fail_second)
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="injected"):
        FeatureCache.build_or_load(config.replace(num_views=1), data_dir, target, backbone)
    assert len(calls) == 2
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        FeatureCache(target)


def _fake_cache(product_category, positive_row, num_views=3, scene_ids=None):
    """A FeatureCache over hand-made index arrays (no files): enough for epoch_plan; each pair is its own
    scene unless `scene_ids` says otherwise."""
    cache = FeatureCache.__new__(FeatureCache)
    cache.cache_dir, cache.num_views = "fake", num_views
    product_category = np.array(product_category, np.int32)
    positive_row = np.array(positive_row, np.int64)
    cache._splits = {"train": {"product_category": product_category, "positive_row": positive_row,
                               "scene_category": product_category[positive_row],
                               "pair_ids": np.arange(len(positive_row)),
                               "scene_ids": np.array(scene_ids or [f"s{i}" for i in range(len(positive_row))],
                                                     dtype=object)}}
    return cache


def test_epoch_plan_hand_made_catalog():
    """Products 0,1 are category 0, product 2 is alone in category 1, 3..5 are category 2.

    Pairs with positive 0 must get negative 1 (the only other product of category 0), positive 1 gets 0;
    the pair whose positive is product 2 is skipped (no possible negative); category-2 negatives are
    the two other products of 3..5.
    """
    cache = _fake_cache([0, 0, 1, 2, 2, 2], [0, 1, 2, 3, 4, 5, 0])
    for epoch_index in range(10):
        plan = cache.epoch_plan(seed=4, epoch_index=epoch_index)
        assert sorted(plan["scene_row"]) == [0, 1, 3, 4, 5, 6]  # pair 2 skipped
        for pos, neg in zip(plan["positive_row"], plan["negative_row"]):
            if pos in (0, 1):
                assert neg == 1 - pos
            else:
                assert neg in {3, 4, 5} - {pos}
        assert all(0 <= v < 3 for k in ("scene_view", "positive_view", "negative_view") for v in plan[k])
    with pytest.raises(ValueError, match="two or more products"):
        _fake_cache([0, 1], [0, 1]).epoch_plan(0, 0)


def test_epoch_plan_never_draws_a_product_of_the_same_scene():
    """Products 0..3 are one category. Scene A holds 0 and 1, scene B holds 2 and 3: A's pairs draw only
    2 or 3 and B's only 0 or 1 (the old rule, "not the positive", drew 1 for pair 0 half the time).
    Scene C holds the only product of category 1: skipped and counted."""
    cache = _fake_cache([0, 0, 0, 0, 1], [0, 1, 2, 3, 4], scene_ids=["A", "A", "B", "B", "C"])
    seen = {}
    for epoch_index in range(20):
        plan = cache.epoch_plan(seed=1, epoch_index=epoch_index)
        assert sorted(plan["scene_row"]) == [0, 1, 2, 3] and plan["skipped_pairs"] == 1
        for row, neg in zip(plan["scene_row"], plan["negative_row"]):
            seen.setdefault(int(row), set()).add(int(neg))
    assert seen == {0: {2, 3}, 1: {2, 3}, 2: {0, 1}, 3: {0, 1}}


@pytest.mark.slow
def test_full_scene_cache_uncrops_train_only(synthetic_data, backbone, cache, tmp_path):
    """full_scene=True: train view v of pair i is the backbone on train_view(full_scene_i, same seed);
    val/test rows equal the cropped cache's (the CTL task is always scored on cropped scenes)."""
    config, data_dir = synthetic_data
    full = FeatureCache.build_or_load(config, data_dir, tmp_path / "full", backbone, full_scene=True)
    assert full.full_scene and full.identity["full_scene_splits"] == ["train"]
    assert [full.manifest["splits"][s]["scenes"] for s in ("train", "val", "test")] == ["full", "cropped", "cropped"]
    for split in ("val", "test"):
        for key in ("pool5", "local"):
            np.testing.assert_array_equal(full.scenes(split)[key], cache.scenes(split)[key])
        np.testing.assert_array_equal(full.products(split)["pool5"], cache.products(split)["pool5"])
    ex = _first_examples(pipeline.raw_pairs(data_dir, "train"), 1)[0]
    seed = cache_build.view_seed(config, 0, 0, ex["pair_id"])
    want = backbone(pipeline.train_view(pipeline.decode_image(ex["full_scene_jpeg"]), seed, config)[None],
                    training=False)["pool5"].numpy()[0]
    got = np.asarray(full.split("train")["scene_pool5"][0, 0], np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    assert not np.allclose(got, np.asarray(cache.split("train")["scene_pool5"][0, 0], np.float32), atol=1e-2)
    # The train products do not depend on the scenes.
    np.testing.assert_array_equal(full.split("train")["product_pool5"], cache.split("train")["product_pool5"])
