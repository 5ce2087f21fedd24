"""embed: question distances equal the full model's d*, AUC equals a hand count, the feature-cache
path scores like the image path, and val/test scenes are cropped whatever cache (train scenes) is used."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.evaluation import embed
from ctl_keras.data import dataset_dir, pipeline
from ctl_keras.feature_cache import FeatureCache
from ctl_keras.model.ctl import build_ctl


@pytest.fixture(scope="module")
def models(synthetic_data):
    config, _ = synthetic_data
    keras.utils.set_random_seed(1)
    return build_ctl(config)


@pytest.fixture(scope="module")
def image_side(synthetic_data, models):
    """Val embeddings through the towers (images)."""
    config, data_dir = synthetic_data
    return (embed.scene_queries(models, config, data_dir, "val"),
            embed.product_embeddings(models, config, data_dir, "val"))


@pytest.fixture(scope="module")
def cache(synthetic_data, models, tmp_path_factory):
    config, data_dir = synthetic_data
    return FeatureCache.build_or_load(config, data_dir, tmp_path_factory.mktemp("fc") / "c", models.backbone)


@pytest.fixture(scope="module")
def full_cache(synthetic_data, models, tmp_path_factory):
    """A cache for training on uncropped scenes: its val/test scenes must still be the cropped ones."""
    config, data_dir = synthetic_data
    return FeatureCache.build_or_load(config, data_dir, tmp_path_factory.mktemp("fc") / "full", models.backbone,
                                      full_scene=True)


def test_question_distances_equal_triplet_model(synthetic_data, models, image_side):
    """d* from the training graph (distance functions, not q) equals 2 - q.f_p on the same center views."""
    config, data_dir = synthetic_data
    queries, products = image_side
    questions = dataset_dir.load_questions(data_dir, "val")[:6]
    d_pos, d_neg = embed.question_distances(queries, products, questions)

    scenes = {int(ex["pair_id"]): ex["scene_jpeg"] for ex in pipeline.raw_pairs(data_dir, "val")}
    prods = {ex["product_id"].numpy().decode(): ex["product_jpeg"] for ex in pipeline.raw_products(data_dir, "val")}
    view = lambda jpeg: pipeline.eval_view(pipeline.decode_image(jpeg), config)
    row = {int(p): i for i, p in enumerate(queries.pair_ids)}
    inputs = {"scene": tf.stack([view(scenes[int(q["pair_id"])]) for q in questions]),
              "positive": tf.stack([view(prods[q["positive"]]) for q in questions]),
              "negative": tf.stack([view(prods[q["negative"]]) for q in questions]),
              "category": tf.constant([queries.categories[row[int(q["pair_id"])]] for q in questions], tf.int32)}
    out = models.triplet_model(from_features=False)(inputs, training=False)
    np.testing.assert_allclose(d_pos, np.asarray(out["d_pos"]), atol=1e-4)
    np.testing.assert_allclose(d_neg, np.asarray(out["d_neg"]), atol=1e-4)
    assert np.all((d_pos >= -1e-5) & (d_pos <= 4 + 1e-5))


def test_validation_auc_equals_hand_count(synthetic_data, models, image_side):
    """AUC = (#questions with q.f+ > q.f- + 0.5 #ties) / #questions, counted in a plain loop."""
    config, data_dir = synthetic_data
    queries, (ids, cats, matrix) = image_side
    questions = dataset_dir.load_questions(data_dir, "val")
    auc = embed.validation_auc(models, config, data_dir, "val")
    q_of = {int(p): q for p, q in zip(queries.pair_ids, queries.query)}
    f_of = dict(zip(ids, matrix))
    score = 0.0
    for x in questions:
        q = q_of[int(x["pair_id"])].astype(np.float64)
        s_pos, s_neg = q @ f_of[x["positive"]], q @ f_of[x["negative"]]
        score += 1.0 if s_pos > s_neg else 0.5 if s_pos == s_neg else 0.0
    assert 0.0 <= auc <= 1.0
    assert auc == pytest.approx(score / len(questions), abs=1e-9)
    # Every question's products are of the pair's category (the split's products table agrees).
    cat_of = dict(zip(ids, cats))
    assert all(cat_of[x["positive"]] == cat_of[x["negative"]] for x in questions)


def test_scene_queries_shapes_and_units(synthetic_data, image_side):
    config, _ = synthetic_data
    queries, (ids, cats, matrix) = image_side
    n, g = len(queries.pair_ids), config.local_grid
    assert queries.query.shape == (n, config.embedding_dim)
    assert queries.attention.shape == (n, g, g)
    np.testing.assert_allclose(queries.attention.sum(axis=(1, 2)), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(queries.scene_embedding, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert queries.categories.dtype == np.int32 and cats.dtype == np.int32
    # Read as the dict it used to be (evaluate.py does): the same arrays.
    with pytest.raises(TypeError):  # attributes only: the dict-style access of the old return value is gone
        queries["query"]
    assert len(set(ids)) == len(ids) and set(queries.positive_ids) <= set(ids)


@pytest.mark.slow
def test_feature_path_matches_image_path(synthetic_data, models, image_side, cache):
    """Same weights, same center view: embeddings agree to float16 precision, AUCs within 0.02."""
    config, data_dir = synthetic_data
    queries, products = image_side
    f_queries = embed.scene_queries(models, config, data_dir, "val", features=cache)
    f_products = embed.product_embeddings(models, config, data_dir, "val", features=cache)
    np.testing.assert_array_equal(f_queries.pair_ids, queries.pair_ids)
    np.testing.assert_array_equal(f_products.ids, products.ids)
    np.testing.assert_allclose(f_queries.query, queries.query, atol=2e-2)
    np.testing.assert_allclose(f_products.embeddings, products.embeddings, atol=2e-2)
    auc_img = embed.validation_auc(models, config, data_dir, "val")
    auc_feat = embed.validation_auc(models, config, data_dir, "val", features=cache)
    assert abs(auc_img - auc_feat) <= 0.02


def test_cache_of_another_view_is_refused(synthetic_data, models, cache):
    """A cache built for another resize (so another center view) must not be scored silently."""
    config, data_dir = synthetic_data
    other = config.replace(resize_size=config.resize_size + 8)
    with pytest.raises(ValueError, match="resize_size"):
        embed.scene_queries(models, other, data_dir, "val", features=cache)
    with pytest.raises(ValueError, match="resize_size"):
        embed.product_embeddings(models, other, data_dir, "val", features=cache)


@pytest.mark.slow
def test_full_scene_cache_embeds_cropped_val_and_test(synthetic_data, models, cache, full_cache):
    """A cache built for full-scene training gives exactly the cropped cache's val/test queries and AUC."""
    config, data_dir = synthetic_data
    for split in ("val", "test"):
        want = embed.scene_queries(models, config, data_dir, split, features=cache)
        got = embed.scene_queries(models, config, data_dir, split, features=full_cache)
        for key in ("query", "attention", "pair_ids", "positive_ids"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key))
        assert (embed.validation_auc(models, config, data_dir, split, features=full_cache)
                == embed.validation_auc(models, config, data_dir, split, features=cache))
    with pytest.raises(ValueError, match="needs the image path"):
        embed.scene_queries(models, config, data_dir, "val", features=full_cache, full_scene=True)


def test_full_scene_option_embeds_uncropped_images(synthetic_data, models, image_side):
    """The explicit analysis option reads full_scene_jpeg: same pairs, other queries than the cropped ones."""
    config, data_dir = synthetic_data
    cropped, _ = image_side
    full = embed.scene_queries(models, config, data_dir, "val", full_scene=True)
    np.testing.assert_array_equal(full.pair_ids, cropped.pair_ids)
    assert not np.allclose(full.query, cropped.query, atol=1e-3)


def test_inference_function_is_traced_once_per_model(synthetic_data, models, cache):
    """Repeated evaluations reuse one tf.function per model: no new trace on the second AUC."""
    config, data_dir = synthetic_data
    embed.validation_auc(models, config, data_dir, "val", features=cache)
    fns = [embed._inference_fn(m) for m in (models.scene_head, models.product_head)]
    before = [f.experimental_get_tracing_count() for f in fns]
    embed.validation_auc(models, config, data_dir, "val", features=cache)
    assert [embed._inference_fn(m) for m in (models.scene_head, models.product_head)] == fns
    assert [f.experimental_get_tracing_count() for f in fns] == before


def test_attention_examples_both_paths(synthetic_data, models, cache, full_cache):
    """Images, cropped cache and full-scene cache all show the same cropped val scenes."""
    config, data_dir = synthetic_data
    images, attention, names = embed.attention_examples(models, config, data_dir, 2)
    f_images, f_attention, f_names = embed.attention_examples(models, config, data_dir, 2, features=cache)
    assert images.dtype == np.uint8 and images.shape == (2, config.image_size, config.image_size, 3)
    assert attention.shape == (2, config.local_grid, config.local_grid)
    assert names == f_names and all(n in config.categories for n in names)
    np.testing.assert_array_equal(images, f_images)
    np.testing.assert_allclose(attention, f_attention, atol=1e-2)
    full_images, full_attention, full_names = embed.attention_examples(models, config, data_dir, 2,
                                                                       features=full_cache)
    np.testing.assert_array_equal(full_images, images)
    np.testing.assert_array_equal(full_attention, f_attention)
    assert full_names == names
