"""Exact per-category maximum-inner-product search over a CatalogIndex.

Because d*(s,p) = 2 - q·f_p (DESIGN §3), the products nearest a (scene, category) are the products of
that category with the largest q·f_p. Every backend here is exact; they differ only in speed.
Ties are broken by catalog row, so all backends return the same order.
"""

from __future__ import annotations

import numpy as np

from ctl_keras.retrieval.index import CatalogIndex

BACKENDS = ("numpy", "tf", "faiss")


def _numpy_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k largest scores, best first, ties by lower index. scores: [B, n]."""
    n = scores.shape[1]
    if k >= n:
        return np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=1)[:, :k]
    # A partition keeps the work O(n). argpartition's k rows would be an arbitrary subset of the rows
    # tied at the k-th score, so keep every row scoring at least that and order those.
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    out = np.empty((scores.shape[0], k), np.int64)
    for b in range(scores.shape[0]):
        rows = np.flatnonzero(scores[b] >= kth[b])
        out[b] = rows[np.lexsort((rows, -scores[b, rows]))[:k]]
    return out


class Searcher:
    """Per-category exact search. `search(queries, category, k)` -> (product_ids [B,k], d_star [B,k])."""

    def __init__(self, index: CatalogIndex, backend: str = "numpy"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        self.index, self.backend = index, backend
        self._rows: dict[int, np.ndarray] = {}
        self._engines: dict[int, object] = {}

    def _prepare(self, c: int):
        if c not in self._rows:
            rows = np.flatnonzero(self.index.category_ids == c)
            matrix = self.index.embeddings[rows]
            if self.backend == "faiss":
                try:
                    import faiss
                except ImportError as e:
                    raise ImportError("the faiss backend needs faiss-cpu: pip install 'ctl_keras[faiss]'") from e
                engine = faiss.IndexFlatIP(matrix.shape[1])
                engine.add(matrix)
            elif self.backend == "tf":
                import tensorflow as tf

                engine = tf.constant(matrix)
            else:
                engine = matrix
            self._rows[c], self._engines[c] = rows, engine
        return self._rows[c], self._engines[c]

    def search(self, queries: np.ndarray, category: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.index.embedding_dim:
            raise ValueError(f"query is {queries.shape[1]}-d but the index holds {self.index.embedding_dim}-d embeddings")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rows, engine = self._prepare(self.index.category_id(category))
        k = min(k, len(rows))
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(str), empty.astype(np.float32)
        if self.backend == "faiss":
            scores, local = engine.search(queries, k)
            # FAISS orders ties arbitrarily; re-sort the k kept by (score, row) for a stable order.
            order = np.lexsort((local, -scores), axis=1)
            local, scores = np.take_along_axis(local, order, 1), np.take_along_axis(scores, order, 1)
        elif self.backend == "tf":
            import tensorflow as tf

            all_scores = tf.linalg.matmul(queries, engine, transpose_b=True)
            # top_k breaks ties by lower index, as the numpy path does.
            scores, local = (t.numpy() for t in tf.math.top_k(all_scores, k=k))
        else:
            all_scores = queries @ engine.T
            local = _numpy_topk(all_scores, k)
            scores = np.take_along_axis(all_scores, local, axis=1)
        hit_rows = rows[local]
        return self.index.product_ids[hit_rows], (2.0 - scores).astype(np.float32)
