"""Embed a split with the towers (images) or the heads (cached features), and score its questions.

Both paths see the same center view: images go through `pipeline.decode_image` + `pipeline.eval_view`
here, and the feature cache stored the backbone's output on exactly that view. Because d* = 2 - q.f_p
exactly (docs/design.md §3), a question needs only one query per pair and one embedding per product.

Val/test scenes are the CTL-cropped ones whatever the model was trained on: the task is recommending a
product that is NOT visible in the scene (paper Table 2 trains some rows on full images but scores
every row on cropped scenes). `full_scene=True` scores uncropped scenes, an analysis only (the product
is visible there), through the image path only.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ctl_keras.evaluation import ranking as metrics
from ctl_keras.data import dataset_dir, pipeline
from ctl_keras.model.distances import d_star

_BATCH = 32


class SceneQueries(NamedTuple):
    """One row per pair of a split, file order."""

    query: np.ndarray  # [N, d] q, with d* = 2 - q·f_p
    scene_embedding: np.ndarray  # [N, d] f_s
    attention: np.ndarray  # [N, g, g]
    pair_ids: np.ndarray  # [N] int64
    categories: np.ndarray  # [N] int32, the asked category
    scene_ids: np.ndarray  # [N] str
    positive_ids: np.ndarray  # [N] str


class ProductEmbeddings(NamedTuple):
    """One row per product of a split, file order; unpacks as (ids, categories, embeddings)."""

    ids: np.ndarray  # [M] str
    categories: np.ndarray  # [M] int32
    embeddings: np.ndarray  # [M, d] f_p
# One tf.function per model: a new one per call would re-trace at every evaluation.
_CALLS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inference_fn(model):
    if model not in _CALLS:
        ref = weakref.ref(model)  # a strong reference in the value would keep the key alive forever
        _CALLS[model] = tf.function(lambda x: ref()(x, training=False), reduce_retracing=True)
    return _CALLS[model]


def _predict(model, batches, progress=None):
    """Run `model` (inference mode) over an iterable of input dicts; concatenate each output key.
    `progress(n)` (optional, e.g. a ctl_keras.utils.progress.Progress's update) is told each batch's size."""
    call = _inference_fn(model)
    chunks: dict[str, list] = {}
    for inputs in batches:
        for k, v in call(inputs).items():
            chunks.setdefault(k, []).append(np.asarray(v))
        if progress is not None:
            progress(len(chunks[k][-1]))
    if not chunks:
        raise ValueError("nothing to embed: the split is empty")
    return {k: np.concatenate(v) for k, v in chunks.items()}


def _check_features(features, config) -> None:
    """Any cache fits val/test (their scenes are cropped in every cache) if its views match the config."""
    ident = features.identity
    # resize_size sets the center view too (resize, then the central image_size crop).
    for key in ("image_size", "resize_size", "local_grid", "backbone_weights"):
        if ident[key] != getattr(config, key):
            raise ValueError(f"feature cache {features.cache_dir} has {key}={ident[key]!r} "
                             f"but the config has {getattr(config, key)!r}")


def _feature_batches(arrays: dict, n: int):
    for start in range(0, n, _BATCH):
        yield {k: tf.constant(np.asarray(v[start:start + _BATCH], np.int32 if k == "category" else np.float32))
               for k, v in arrays.items()}


def _scene_image_dataset(config, data_dir, split, full_scene):
    key = "full_scene_jpeg" if full_scene else "scene_jpeg"
    return pipeline.raw_pairs(data_dir, split).map(
        lambda ex: {"image": pipeline.eval_view(pipeline.decode_image(ex[key]), config),
                    "category": tf.cast(ex["category_index"], tf.int32), "pair_id": ex["pair_id"],
                    "scene_id": ex["scene_id"], "positive_id": ex["product_id"]},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def scene_queries(models, config, data_dir, split, features=None, full_scene=False, progress=None) -> SceneQueries:
    """One row per pair of `split` (file order): query, f_s, attention, category and ids.

    Scenes are cropped; `full_scene=True` (analysis only, image path only) embeds the uncropped ones.
    """
    if features is not None and full_scene:
        raise ValueError("full_scene=True scores uncropped scenes, which needs the image path (features=None): "
                         f"feature cache {features.cache_dir} holds only cropped val/test scenes")
    if features is not None:
        _check_features(features, config)
        s = features.scenes(split)
        out = _predict(models.scene_head, _feature_batches(
            {"pool5": s["pool5"], "local": s["local"], "category": s["category"]}, len(s["pair_ids"])), progress)
        meta = {"pair_ids": np.asarray(s["pair_ids"], np.int64), "category": np.asarray(s["category"], np.int32),
                "scene_ids": np.asarray(s["scene_ids"], str), "positive_ids": np.asarray(s["positive_ids"], str)}
    else:
        meta_chunks: dict[str, list] = {k: [] for k in ("pair_id", "category", "scene_id", "positive_id")}

        def batches():
            for b in _scene_image_dataset(config, data_dir, split, full_scene).batch(_BATCH).prefetch(2):
                for k in meta_chunks:
                    meta_chunks[k].append(b[k].numpy())
                yield {"image": b["image"], "category": b["category"]}

        out = _predict(models.scene_tower, batches(), progress)
        meta = {"pair_ids": np.concatenate(meta_chunks["pair_id"]).astype(np.int64),
                "category": np.concatenate(meta_chunks["category"]).astype(np.int32),
                "scene_ids": np.char.decode(np.concatenate(meta_chunks["scene_id"]).astype(bytes)),
                "positive_ids": np.char.decode(np.concatenate(meta_chunks["positive_id"]).astype(bytes))}
    return SceneQueries(out["query"], out["scene_embedding"], out["attention"], meta["pair_ids"], meta["category"],
                        meta["scene_ids"], meta["positive_ids"])


def product_embeddings(models, config, data_dir, split, features=None, progress=None) -> ProductEmbeddings:
    """ids, categories and f_p of every product of `split` (file order); `progress(n)`: see _predict."""
    if features is not None:
        _check_features(features, config)
        p = features.products(split)
        out = _predict(models.product_head, _feature_batches({"pool5": p["pool5"]}, len(p["ids"])), progress)
        return ProductEmbeddings(np.asarray(p["ids"], str), np.asarray(p["category"], np.int32),
                                 out["product_embedding"])
    ids, cats = [], []

    def batches():
        ds = pipeline.raw_products(data_dir, split).map(
            lambda ex: {"image": pipeline.eval_view(pipeline.decode_image(ex["product_jpeg"]), config),
                        "product_id": ex["product_id"], "category": tf.cast(ex["category_index"], tf.int32)},
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        for b in ds.batch(_BATCH).prefetch(2):
            ids.append(b["product_id"].numpy())
            cats.append(b["category"].numpy())
            yield {"image": b["image"]}

    out = _predict(models.product_tower, batches(), progress)
    return ProductEmbeddings(np.char.decode(np.concatenate(ids).astype(bytes)), np.concatenate(cats).astype(np.int32),
                             out["product_embedding"])


def question_distances(queries: SceneQueries, products: ProductEmbeddings, questions):
    """(d_pos, d_neg) per question, d* = 2 - q.f_p, in float64."""
    ids, _, matrix = products
    pair_row = {int(p): i for i, p in enumerate(queries.pair_ids)}
    product_row = {str(p): i for i, p in enumerate(ids)}

    def rows(table, keys, what):
        try:
            return np.array([table[k] for k in keys], np.int64)
        except KeyError as e:
            raise ValueError(f"question refers to {what} {e.args[0]!r}, which is not in the embedded split") from None

    q = np.asarray(queries.query, np.float64)[rows(pair_row, [int(x["pair_id"]) for x in questions], "pair")]
    f = np.asarray(matrix, np.float64)
    f_pos = f[rows(product_row, [str(x["positive"]) for x in questions], "product")]
    f_neg = f[rows(product_row, [str(x["negative"]) for x in questions], "product")]
    return d_star(q, f_pos, paired=True), d_star(q, f_neg, paired=True)


def validation_auc(models, config, data_dir, split, features=None, full_scene=False) -> float:
    """AUC on the fixed binary questions of `split` (val or test), on cropped scenes unless full_scene."""
    questions = dataset_dir.load_questions(data_dir, split)
    queries = scene_queries(models, config, data_dir, split, features, full_scene)
    products = product_embeddings(models, config, data_dir, split, features)
    return metrics.binary_auc(*question_distances(queries, products, questions))


def attention_examples(models, config, data_dir, n, features=None):
    """First n val pairs, cropped: (center-view images uint8 [n,S,S,3], attention [n,g,g], category names)."""
    ds = _scene_image_dataset(config, data_dir, "val", False).take(n).batch(max(1, n))
    batch = next(iter(ds), None)
    if batch is None:
        raise ValueError(f"no val pairs in {data_dir}")
    images = np.clip(np.round(batch["image"].numpy()), 0, 255).astype(np.uint8)
    category = batch["category"].numpy()
    if features is not None:
        _check_features(features, config)
        s = features.scenes("val")
        k = len(images)
        out = _predict(models.scene_head, _feature_batches(
            {"pool5": s["pool5"][:k], "local": s["local"][:k], "category": s["category"][:k]}, k))
    else:
        out = _predict(models.scene_tower, [{"image": batch["image"], "category": batch["category"]}])
    return images, out["attention"], [config.categories[int(c)] for c in category]
