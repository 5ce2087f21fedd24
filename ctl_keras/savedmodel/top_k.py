"""Exact per-category top-K in TensorFlow: the one brute-force search of the package.

`BruteForce` holds a catalog (embeddings, category ids, product ids) as variables and answers
`top_k(queries, category_ids, k)` with q·f_p over the whole catalog, other categories masked to -inf,
then `tf.math.top_k` (ties by lower catalog row, like the numpy and FAISS backends). The `tf` search
backend (retrieval/exact.py) calls it eagerly; the recommender SavedModel (savedmodel/signatures.py)
tracks it as a child module and calls `padded(...)` inside its signatures, so Python and the
SavedModel run the same code. Variables, not constants: a large catalog would overflow the 2 GB graph
proto. Like TF Recommenders' `BruteForce` layer, without Keras: a SavedModel holding it needs neither
keras nor ctl_keras to load.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctl_keras.model.distances import d_star_from_scores

# Padding of the result slots when a category has fewer than k products (padded()).
PAD_D_STAR = 4.0


class BruteForce(tf.Module):
    def __init__(self, embeddings, category_ids, product_ids, name: str = "catalog"):
        super().__init__(name=name)
        self.embeddings = tf.Variable(np.asarray(embeddings, np.float32), trainable=False, name="embeddings")
        self.categories = tf.Variable(np.asarray(category_ids, np.int32), trainable=False, name="categories")
        self.product_ids = tf.Variable(np.asarray(product_ids, dtype=object).astype(bytes), trainable=False,
                                       dtype=tf.string, name="product_ids")

    @property
    def size(self) -> int:
        return int(self.embeddings.shape[0])

    def top_k(self, queries, category_ids, k: int):
        """queries [N, d], category ids [N] -> (scores [N, k], catalog rows [N, k]); slots past a
        category's size score -inf."""
        scores = tf.linalg.matmul(queries, self.embeddings, transpose_b=True)
        in_category = tf.equal(self.categories[tf.newaxis, :], tf.cast(category_ids, tf.int32)[:, tf.newaxis])
        scores = tf.where(in_category, scores, tf.constant(-np.inf, tf.float32))
        return tf.math.top_k(scores, k=k)

    def padded(self, queries, category_ids, k: int) -> dict:
        """The SavedModel's outputs: product_ids [N, k] ("" past a category's size), d_star [N, k]
        (PAD_D_STAR there), num_results [N]."""
        top, rows = self.top_k(queries, category_ids, k)
        valid = tf.math.is_finite(top)
        return {
            "product_ids": tf.where(valid, tf.gather(self.product_ids, rows), b""),
            "d_star": tf.where(valid, d_star_from_scores(top), PAD_D_STAR),
            "num_results": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
        }
