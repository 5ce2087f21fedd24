"""The CTL models: the d* = 2 - q·f_p identity for every variant, unit embeddings, head-only weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import numpy as np
import pytest

from ctl_keras.config import VARIANTS, get_config
from ctl_keras.model.ctl import build_ctl

BATCH = 3


@pytest.fixture(scope="module")
def built():
    """One smoke build (64 px, grid 4, d=16, random frozen backbone) per variant."""
    return {v: build_ctl(get_config("synthetic", smoke=True, variant=v)) for v in VARIANTS}


def _batch(seed=0):
    rng = np.random.RandomState(seed)
    images = lambda: rng.uniform(0, 255, (BATCH, 64, 64, 3)).astype("float32")
    return {"scene": images(), "positive": images(), "negative": images(),
            "category": np.array([0, 2, 4], "int32")}


def _tower_outputs(models, batch):
    scene = models.scene_tower({"image": batch["scene"], "category": batch["category"]})
    pos = models.product_tower({"image": batch["positive"]})["product_embedding"]
    neg = models.product_tower({"image": batch["negative"]})["product_embedding"]
    return {k: np.asarray(v) for k, v in scene.items()}, np.asarray(pos), np.asarray(neg)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_triplet_distances_equal_two_minus_query_dot_product(built, variant):
    """Unit vectors make d* = 2 - q·f_p exact (docs/design.md §3), from images and from backbone features alike."""
    models, batch = built[variant], _batch()
    scene, f_pos, f_neg = _tower_outputs(models, batch)
    expected_pos = 2.0 - np.sum(scene["query"] * f_pos, axis=-1)
    expected_neg = 2.0 - np.sum(scene["query"] * f_neg, axis=-1)

    from_images = models.triplet_model(from_features=False)(batch)
    np.testing.assert_allclose(np.asarray(from_images["d_pos"]), expected_pos, atol=1e-5)
    np.testing.assert_allclose(np.asarray(from_images["d_neg"]), expected_neg, atol=1e-5)

    scene_features = models.backbone(batch["scene"])
    features = {"scene_pool5": scene_features["pool5"], "scene_local": scene_features["local"],
                "positive_pool5": models.backbone(batch["positive"])["pool5"],
                "negative_pool5": models.backbone(batch["negative"])["pool5"]}
    # Keras refuses a dict mixing tensors and numpy arrays, so pass numpy throughout.
    features = {k: np.asarray(v) for k, v in features.items()} | {"category": batch["category"]}
    from_features = models.triplet_model(from_features=True)(features)
    np.testing.assert_allclose(np.asarray(from_features["d_pos"]), expected_pos, atol=1e-5)
    np.testing.assert_allclose(np.asarray(from_features["d_neg"]), expected_neg, atol=1e-5)
    assert ((expected_pos >= -1e-5) & (expected_pos <= 4 + 1e-5)).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_embeddings_unit_and_attention_sums_to_one(built, variant):
    """f_s, f_p unit length; attention [B,4,4] sums to 1; equal weights 1/16 where the variant has none."""
    models = built[variant]
    scene, f_pos, _ = _tower_outputs(models, _batch(1))
    np.testing.assert_allclose(np.linalg.norm(scene["scene_embedding"], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(f_pos, axis=-1), 1.0, atol=1e-5)
    assert scene["query"].shape == (BATCH, 16) and scene["attention"].shape == (BATCH, 4, 4)
    np.testing.assert_allclose(scene["attention"].sum(axis=(1, 2)), 1.0, atol=1e-5)
    if variant in ("global", "local_uniform"):
        np.testing.assert_allclose(scene["attention"], 1.0 / 16, atol=1e-7)
    else:
        assert scene["attention"].std(axis=(1, 2)).min() > 0  # category-dependent, not flat


def test_only_heads_train_and_towers_share_them(built):
    """The triplet model's trainable weights are exactly the heads' (backbone frozen, nothing else)."""
    models = built["hybrid"]
    head_ids = {id(w) for w in models.heads.trainable_weights}
    for from_features in (False, True):
        assert {id(w) for w in models.triplet_model(from_features).trainable_weights} == head_ids
    assert {id(w) for w in models.scene_tower.trainable_weights} | {
        id(w) for w in models.product_tower.trainable_weights} == head_ids
    # Three heads of 6 trainable arrays (2 Dense x kernel+bias, BN gamma+beta), the global head's product
    # BN gamma+beta, and the category table.
    assert len(head_ids) == 3 * 6 + 2 + 1


@pytest.mark.slow
def test_no_gradient_enters_the_frozen_backbone(built):
    """The image-path train step's backward has no backbone op (XLA would have to compile them, and
    refuses MaxPoolGrad under op determinism), and the heads still get every gradient."""
    import tensorflow as tf

    models = built["hybrid"]
    triplet = models.triplet_model(from_features=False)
    variables = models.heads.trainable_variables

    @tf.function
    def grads(batch):
        with tf.GradientTape() as tape:
            out = triplet(batch, training=True)
            loss = tf.reduce_mean(out["d_pos"] - out["d_neg"])
        return tape.gradient(loss, variables)

    batch = {k: tf.constant(v) for k, v in _batch().items()}
    ops = {op.type for op in grads.get_concrete_function(batch).graph.get_operations()}
    assert "MaxPoolGrad" not in ops and "Conv2DBackpropFilter" not in ops and "Conv2DBackpropInput" not in ops
    assert all(g is not None for g in grads(batch))


@pytest.mark.slow
def test_save_load_heads_round_trip_in_fresh_build(built, tmp_path):
    """Perturbed heads saved, loaded into a fresh same-seed build: identical tower outputs; file has no backbone."""
    models, batch = built["hybrid"], _batch(2)
    rng = np.random.RandomState(0)
    for weight in models.heads.weights:
        value = np.asarray(weight)
        weight.assign(value + rng.uniform(0.1, 0.2, value.shape).astype(value.dtype))
    path = tmp_path / "heads.weights.h5"
    models.save_heads(str(path))
    assert sorted(os.listdir(tmp_path)) == ["heads.weights.h5"]  # no temp file left
    with h5py.File(path) as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append(name) if isinstance(obj, h5py.Dataset) else None)
    assert len(arrays) == len(models.heads.weights) and not any("conv" in name for name in arrays)

    fresh = build_ctl(models.config)
    before, _, _ = _tower_outputs(fresh, batch)
    saved, saved_pos, _ = _tower_outputs(models, batch)
    assert np.abs(before["query"] - saved["query"]).max() > 1e-3  # the perturbation shows
    fresh.load_heads(str(path))
    after, after_pos, _ = _tower_outputs(fresh, batch)
    for key in saved:
        np.testing.assert_allclose(after[key], saved[key], atol=1e-6)
    np.testing.assert_allclose(after_pos, saved_pos, atol=1e-6)


def test_load_heads_refuses_other_variant_and_bad_names(built, tmp_path):
    """A hybrid file into a global model -> ValueError naming the file; a missing file or bad suffix too."""
    path = tmp_path / "hybrid.weights.h5"
    built["hybrid"].save_heads(str(path))
    with pytest.raises(ValueError, match="hybrid.weights.h5 does not match this model .variant=global"):
        built["global"].load_heads(str(path))
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        built["global"].load_heads(str(tmp_path / "nope.weights.h5"))
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        built["global"].save_heads(str(tmp_path / "heads.h5"))


@pytest.mark.parametrize("variant", ["hybrid", "global"])
def test_global_head_batchnorm_same_statistics_at_train_and_inference(variant):
    """One training call on (s, p+, p-) moves the scene BN mean by (1 - momentum) x the scene batch
    mean and the product BN mean by (1 - momentum) x the mean over p+ and p- together; with momentum 0
    and no dropout the inference towers then reproduce the training-mode distances exactly.

    The old graph (three calls of one BatchNorm) left the mean of the last call (negatives) instead,
    so the towers normalised differently from training.
    """
    models = build_ctl(get_config("synthetic", smoke=True, variant=variant, dropout=0.0))
    batch = _batch(3)
    feats = {k: np.asarray(models.backbone(batch[k])["pool5"]) for k in ("scene", "positive", "negative")}
    inputs = {"scene_pool5": feats["scene"], "scene_local": np.asarray(models.backbone(batch["scene"])["local"]),
              "positive_pool5": feats["positive"], "negative_pool5": feats["negative"],
              "category": batch["category"]}
    head = models.heads.global_head
    scene_hidden = np.asarray(head.hidden(feats["scene"]))
    product_hidden = np.asarray(head.hidden(np.concatenate([feats["positive"], feats["negative"]])))
    momentum = head.batch_norm.momentum
    models.triplet_model(from_features=True)(inputs, training=True)
    np.testing.assert_allclose(np.asarray(head.batch_norm.moving_mean), (1 - momentum) * scene_hidden.mean(0),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(head.product_batch_norm.moving_mean),
                               (1 - momentum) * product_hidden.mean(0), rtol=1e-4, atol=1e-6)

    heads = (models.heads.global_head, models.heads.local_head, models.heads.attention_head)
    for norm in [h.batch_norm for h in heads if h is not None] + [head.product_batch_norm]:
        norm.momentum = 0.0  # moving statistics := the statistics of the next batch
    trained = models.triplet_model(from_features=True)(inputs, training=True)
    np.testing.assert_allclose(np.asarray(head.product_batch_norm.moving_mean), product_hidden.mean(0),
                               rtol=1e-4, atol=1e-5)
    scene, f_pos, f_neg = _tower_outputs(models, batch)
    np.testing.assert_allclose(np.asarray(trained["d_pos"]), 2.0 - np.sum(scene["query"] * f_pos, -1), atol=1e-4)
    np.testing.assert_allclose(np.asarray(trained["d_neg"]), 2.0 - np.sum(scene["query"] * f_neg, -1), atol=1e-4)
