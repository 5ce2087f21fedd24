"""Every baseline trains a step on the tiny synthetic fixture and scores the test questions."""

import os

import numpy as np
import pytest

from ctl_keras.baselines import registry
from ctl_keras.baselines.base import SplitFeatures, sample_negatives, split_features
from ctl_keras.data import dataset_dir
from ctl_keras.feature_cache import FeatureCache


@pytest.fixture(scope="module")
def features(synthetic_data, tmp_path_factory):
    from ctl_keras.model.backbone import seeded_backbone

    config, data_dir = synthetic_data
    backbone = seeded_backbone(config)
    cache = FeatureCache.build_or_load(config, data_dir, tmp_path_factory.mktemp("bl") / "cache", backbone)
    return backbone, split_features(cache, "train", data_dir), split_features(cache, "test", data_dir)


def _check_result(result, config):
    assert 0.0 <= result["auc"] <= 1.0
    assert len(result["topk"]) == config.topk_max
    assert all(a <= b for a, b in zip(result["topk"], result["topk"][1:]))  # Top-K grows with K
    assert result["per_category"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["random", "popularity", "imagenet", "ibr", "bpr_dae", "siamese"])
def test_baseline_fits_one_epoch_and_scores(synthetic_data, features, name):
    config, data_dir = synthetic_data
    backbone, train, test = features
    kwargs = {"epochs": 1, "batch_size": 16}
    if name == "siamese":
        kwargs["backbone"] = backbone
    method = registry.create(name, config, **kwargs)
    log = method.fit(train)
    if name in ("ibr", "bpr_dae", "siamese"):
        assert len(log["loss"]) == 1 and np.isfinite(log["loss"][0])
    result = method.score(test, dataset_dir.load_questions(data_dir, "test"))
    _check_result(result, config)
    assert result["num_questions"] == len(dataset_dir.load_questions(data_dir, "test"))


def test_trained_baseline_is_seeded(synthetic_data, features):
    """Same seed, same data -> the same IBR distances."""
    config, data_dir = synthetic_data
    _, train, test = features
    runs = []
    for _ in range(2):
        m = registry.create("ibr", config, epochs=1)
        m.fit(train)
        runs.append(m.distances(m.encode_scenes(test)[:3], m.encode_products(test)[:4]))
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)


def test_popularity_counts_train_pairs(synthetic_data, features):
    """A product with k train pairs gets distance −k; an unseen one 0."""
    config, _ = synthetic_data
    _, train, test = features
    m = registry.create("popularity", config)
    m.fit(train)
    pid = train.positive_ids[0]
    k = sum(p == pid for p in train.positive_ids)
    assert m.counts[pid] == k >= 1
    reps = m.encode_products(test)
    unseen = [i for i, p in enumerate(test.product_ids) if p not in m.counts]
    assert all(reps[i, 0] == 0 for i in unseen)


def test_negatives_share_category_and_differ_from_positive(features):
    _, train, _ = features
    neg = sample_negatives(train, np.random.default_rng(0))
    many = np.array([np.sum(train.product_categories == c) > 1 for c in train.pair_categories])
    assert np.all(neg[many] >= 0) and np.all(neg[~many] == -1)  # -1: no negative exists, pair skipped
    assert np.all(train.product_categories[neg[many]] == train.pair_categories[many])
    assert np.all(neg[many] != train.positive_rows[many])


def test_baseline_negatives_exclude_the_scene_and_never_return_the_positive():
    """The baselines' sampler is data.negatives': scene A holds products 0 and 1 -> both its pairs draw 2;
    product 3 is alone in its category -> -1 (the old sampler returned the positive itself)."""
    split = SplitFeatures(
        split="train", pair_ids=np.arange(4), scene_ids=["A", "A", "B", "C"],
        pair_categories=np.array([0, 0, 0, 1], np.int32), positive_ids=["p0", "p1", "p2", "p3"],
        positive_rows=np.array([0, 1, 2, 3]), scene_pool5=np.zeros((4, 1, 2)), scene_local=None,
        product_ids=["p0", "p1", "p2", "p3"], product_categories=np.array([0, 0, 0, 1], np.int32),
        product_pool5=np.zeros((4, 1, 2)))
    for seed in range(10):
        neg = sample_negatives(split, np.random.default_rng(seed))
        assert neg[0] == neg[1] == 2 and neg[2] in (0, 1) and neg[3] == -1


def test_unknown_baseline_lists_valid_names(synthetic_data):
    with pytest.raises(ValueError, match="unknown baseline 'nope'; valid names: random, popularity"):
        registry.create("nope", synthetic_data[0])


def test_full_scene_cache_gives_uncropped_train_scenes_only(synthetic_data, features):
    """A full-scene run fits on uncropped train scenes; its val/test splits (siamese reads the images
    by this flag) are the cropped ones."""
    _, data_dir = synthetic_data
    _, train, _ = features
    full = FeatureCache(os.path.dirname(os.path.dirname(train.scene_pool5.filename)))
    full.full_scene = True  # as a cache built with full_scene=True reports it
    assert split_features(full, "train", data_dir).full_scene is True
    assert split_features(full, "val", data_dir).full_scene is False
    assert split_features(full, "test", data_dir).full_scene is False


@pytest.fixture(scope="module")
def val_split(features, synthetic_data):
    _, data_dir = synthetic_data
    _, train, _ = features
    cache = FeatureCache(os.path.dirname(os.path.dirname(train.scene_pool5.filename)))
    return split_features(cache, "val", data_dir)


def test_trained_baseline_keeps_its_best_validation_epoch(synthetic_data, features, val_split):
    """Validation every eval_every epochs unless that gives fewer than 5 validations (here eval_every=2 of 5
    epochs: every epoch, evaluation.selection.validation_every); the weights after fit are those of the
    best validation epoch: re-validating them gives the recorded best AUC."""
    config, data_dir = synthetic_data
    _, train, _ = features
    m = registry.create("ibr", config.replace(eval_every=2), epochs=5, learning_rate=3e-4)
    log = m.fit(train, val_split)
    assert [h["epoch"] for h in log["val_history"]] == [1, 2, 3, 4, 5]
    assert log["learning_rate"] == 3e-4 and log["eval_every"] == 1
    aucs = [h["val_auc"] for h in log["val_history"]]
    assert log["val_auc"] == max(aucs)
    assert log["best_epoch"] == log["val_history"][int(np.argmax(aucs))]["epoch"]
    again = m.validation_auc(val_split, dataset_dir.load_questions(data_dir, "val"))
    assert again == pytest.approx(log["val_auc"], abs=1e-9)


def test_trained_baselines_use_the_papers_batch_size_and_only_full_batches(synthetic_data, features):
    """Batch size defaults to config.batch_size (not 64); the epoch has floor(valid pairs / batch) steps."""
    config, _ = synthetic_data
    _, train, _ = features
    m = registry.create("bpr_dae", config, epochs=1)
    assert m.batch_size == config.batch_size
    m.prepare(train)
    batches = list(m._epoch_batches(train, np.random.default_rng(0)))
    valid = int(np.sum(sample_negatives(train, np.random.default_rng(0)) >= 0))  # whether one exists: rng-free
    assert len(batches) == valid // config.batch_size
    assert all(b["scene"].shape == (config.batch_size, 2048) for b in batches)


def test_baseline_fit_goes_through_the_shared_step(synthetic_data, features):
    """A baseline's divergence is caught by training.step.run_epoch, the epoch loop our model uses:
    NaN weights (a NaN learning rate) stop fit with the same TrainingDiverged message as train."""
    from ctl_keras.training import loop, step

    config, _ = synthetic_data
    _, train, _ = features
    m = registry.create("ibr", config, epochs=2)
    m.learning_rate = float("nan")
    assert loop.TrainingDiverged is step.TrainingDiverged
    with pytest.raises(step.TrainingDiverged, match=r"loss is nan at epoch 1 step 2; stopped without saving"):
        m.fit(train)


def test_siamese_contrastive_push_acts_on_unit_vectors():
    """Orthogonal unit vectors (d² = 2, where unrelated embeddings sit) still get pushed, by
    (√(2 + α) − √2)²; a negative α beyond orthogonal is not; near collapse the push's gradient
    stays large (it acts on d, whose direction is unit length) instead of vanishing with d."""
    import tensorflow as tf

    from ctl_keras.baselines.siamese import contrastive_loss, contrastive_margin

    alpha = 0.2
    assert contrastive_margin(alpha) == pytest.approx(np.sqrt(2.2))
    s = tf.constant([[1.0, 0.0, 0.0]])
    p = tf.constant([[1.0, 0.0, 0.0]])
    orthogonal = tf.constant([[0.0, 1.0, 0.0]])
    beyond = tf.constant([[-0.2, np.sqrt(1 - 0.04), 0.0]])  # d² = 2.4 > 2.2
    assert float(contrastive_loss(s, p, orthogonal, alpha)[0]) == pytest.approx((np.sqrt(2.2) - np.sqrt(2)) ** 2)
    assert float(contrastive_loss(s, p, beyond, alpha)[0]) == pytest.approx(0.0, abs=1e-7)
    near = tf.Variable([[1.0, 1e-4, 0.0]])
    with tf.GradientTape() as tape:
        loss = contrastive_loss(s, p, near, alpha)
    grad = tape.gradient(loss, near)
    assert float(tf.norm(grad)) > 2.0  # 2 (m − d) with d ≈ 0: about 2.97
