"""How closely a bfloat16 backbone agrees with the float32 one on a sample: measured, never assumed.

Inputs are the same sample's outputs under both precisions: scene queries q and product vectors f
(embeddings in an export; L2-normalized pool5 in the feature cache). Reported: cosine of each row with
its float32 counterpart (min, median), the overlap of each query's top-10 (by d* = 2 - q.f, against the
catalog when given, else against the sample's products) and the largest |d*_bf16 - d*_float32|.
float32 against itself gives cosine 1, overlap 10/10 and 0.
"""

from __future__ import annotations

import os

import numpy as np

SAMPLE = 64  # scenes and products: a few seconds of backbone on a CPU


def dataset_sample(config, data_dir: str | None, n: int = SAMPLE) -> dict:
    """The images both precisions are compared on: the first `n` test scenes (with their categories) and
    test products of `data_dir` when it is built on this machine, else `n` seeded synthetic images (weaker
    evidence; `source` says so). {"scenes": [n,S,S,3], "category": [n] int32, "products": [m,S,S,3],
    "source": str}; the export and the feature cache both draw it here."""
    import tensorflow as tf  # noqa: PLC0415

    from ctl_keras.data import pipeline  # noqa: PLC0415

    if data_dir and os.path.exists(os.path.join(data_dir, "manifest.json")):
        view = lambda jpeg: pipeline.eval_view(pipeline.decode_image(jpeg), config)  # noqa: E731
        scenes, cats = [], []
        for ex in pipeline.raw_pairs(data_dir, "test").take(n):
            scenes.append(view(ex["scene_jpeg"]))
            cats.append(int(ex["category_index"]))
        products = [view(ex["product_jpeg"]) for ex in pipeline.raw_products(data_dir, "test").take(n)]
        if scenes and products:
            return {"scenes": tf.stack(scenes), "category": np.array(cats, np.int32),
                    "products": tf.stack(products), "source": f"test split of {os.path.abspath(data_dir)}"}
    rng = np.random.default_rng(0)
    size = config.image_size
    # Smooth random images (a coarse grid upsampled): closer to photographs than white noise.
    coarse = rng.uniform(0, 255, (2 * n, 8, 8, 3)).astype(np.float32)
    images = tf.image.resize(coarse, [size, size])
    return {"scenes": images[:n], "category": (np.arange(n) % len(config.categories)).astype(np.int32),
            "products": images[n:], "source": "synthetic (no dataset of the run on this machine)"}


FLOOR_KEY = "cosine_min"  # what --min_backbone_agreement is compared with: the worst row anywhere


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norm > 0, (a * b).sum(1) / np.maximum(norm, 1e-300), 1.0)


def compare(ref_queries, new_queries, ref_products, new_products, catalog=None, k: int = 10) -> dict:
    """The agreement figures (JSON-ready floats) of one sample; `catalog` [M, d] is searched by both."""
    ref_q, new_q = np.asarray(ref_queries, np.float64), np.asarray(new_queries, np.float64)
    q_cos, p_cos = _cosine(ref_q, new_q), _cosine(ref_products, new_products)
    ref_c = np.asarray(ref_products if catalog is None else catalog, np.float64)
    new_c = np.asarray(new_products if catalog is None else catalog, np.float64)
    ref_d, new_d = 2.0 - ref_q @ ref_c.T, 2.0 - new_q @ new_c.T
    k = min(k, ref_d.shape[1])
    top = lambda d: np.argsort(d, axis=1, kind="stable")[:, :k]  # noqa: E731
    overlap = np.array([len(set(a) & set(b)) for a, b in zip(top(ref_d), top(new_d))])
    both = np.concatenate([q_cos, p_cos])
    return {"cosine_min": float(both.min()), "query_cosine_min": float(q_cos.min()),
            "query_cosine_median": float(np.median(q_cos)), "product_cosine_min": float(p_cos.min()),
            "product_cosine_median": float(np.median(p_cos)), "top_k": int(k),
            "top_k_overlap_mean": float(overlap.mean()), "top_k_overlap_min": int(overlap.min()),
            "max_abs_delta_d_star": float(np.abs(new_d - ref_d).max()),
            "queries": int(len(ref_q)), "products": int(len(ref_products)),
            "searched": "catalog" if catalog is not None else "sample products"}


def normalized(x) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def line(agreement: dict) -> str:
    """The one log line of an agreement."""
    a = agreement
    return (f"bfloat16 vs float32 on {a['queries']} queries x {a['products']} products: cosine min "
            f"{a['cosine_min']:.6f} (queries median {a['query_cosine_median']:.6f}, products median "
            f"{a['product_cosine_median']:.6f}), top-{a['top_k']} overlap mean {a['top_k_overlap_mean']:.2f} "
            f"min {a['top_k_overlap_min']} (against the {a['searched']}), max |delta d*| "
            f"{a['max_abs_delta_d_star']:.4g}")


def check_floor(agreement: dict, floor: float | None, what: str) -> None:
    """ValueError (one line) when the worst cosine is below the user's floor."""
    if floor is not None and agreement[FLOOR_KEY] < floor:
        raise ValueError(f"{what}: the bfloat16 backbone agrees with float32 less than --min_backbone_agreement="
                         f"{floor}: {line(agreement)}; use --backbone_precision=float32 or lower the floor")
