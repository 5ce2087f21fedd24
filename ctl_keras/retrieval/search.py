"""Per-category maximum-inner-product search over a CatalogIndex, behind one backend interface.

Because d*(s,p) = 2 - q·f_p (docs/design.md §3), the products nearest a (scene, category) are the products of
that category with the largest q·f_p. A backend (like TensorFlow Recommenders' TopK layers: BruteForce,
ScaNN) is built over one category's embedding matrix and answers `search(queries, k)` with
(scores, local rows), best first. The exact backends (numpy, tf, faiss) return the same order, ties
broken by catalog row. The approximate one (ivf, ctl_keras/retrieval/ann.py) is built at index time,
stored beside the index and only used when the index holds it.
"""

from __future__ import annotations

import numpy as np

from ctl_keras.config import APPROXIMATE_BACKENDS, EXACT_BACKENDS
from ctl_keras.model.distances import d_star_from_scores
from ctl_keras.retrieval.index import CatalogIndex


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


def stable_order(scores: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-sort each row of a FAISS answer by (score desc, row asc): FAISS orders ties arbitrarily."""
    order = np.lexsort((local, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(local, order, 1)


def import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise RuntimeError("the faiss backends need faiss-cpu: pip install 'ctl_keras[faiss]'") from e
    return faiss


class NumpyExact:
    """Brute force in numpy: matmul, then an O(n) partition."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = matrix

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self.matrix.T
        local = _numpy_topk(scores, k)
        return np.take_along_axis(scores, local, axis=1), local


class TFExact:
    """Brute force in TensorFlow: matmul + top_k (which breaks ties by lower index)."""

    def __init__(self, matrix: np.ndarray):
        import tensorflow as tf

        self.matrix = tf.constant(matrix)

    def search(self, queries, k):
        import tensorflow as tf

        scores = tf.linalg.matmul(queries, self.matrix, transpose_b=True)
        return tuple(t.numpy() for t in tf.math.top_k(scores, k=k))


class FaissFlat:
    """Brute force in FAISS (IndexFlatIP): exact, the fastest exact backend from 100k products up."""

    def __init__(self, matrix: np.ndarray):
        self.engine = import_faiss().IndexFlatIP(matrix.shape[1])
        self.engine.add(matrix)

    def search(self, queries, k):
        return stable_order(*self.engine.search(queries, k))


_EXACT = {"numpy": NumpyExact, "tf": TFExact, "faiss": FaissFlat}


class Searcher:
    """Per-category search. `search(queries, category, k)` -> (product_ids [B,k], d_star [B,k]).

    backend None: what the index holds (its approximate index if built with `--approximate`, else
    numpy). An exact backend may be asked of any index (the embeddings are always there); the
    approximate one only of an index that holds it: anything else is refused, naming the rebuild.
    """

    def __init__(self, index: CatalogIndex, backend: str | None = None):
        held = index.meta.get("search", {}).get("backend")
        backend = backend or held or "numpy"
        if backend not in EXACT_BACKENDS + APPROXIMATE_BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of "
                             f"{', '.join(EXACT_BACKENDS + APPROXIMATE_BACKENDS)}")
        if backend in APPROXIMATE_BACKENDS and (backend != held or index.ann is None):
            raise ValueError(f"backend {backend!r} needs an index built with `recommend index --approximate`; "
                             f"this index holds {held or 'no approximate index'} (exact search: --backend=faiss)")
        self.index, self.backend = index, backend
        self._rows: dict[int, np.ndarray] = {}
        self._engines: dict[int, object] = {}

    def _prepare(self, c: int):
        if c not in self._rows:
            rows = np.flatnonzero(self.index.category_ids == c)
            if self.backend in APPROXIMATE_BACKENDS and c in self.index.ann:
                engine = self.index.ann[c]
            else:  # exact backend, or a category below the approximate index's size threshold
                name = self.backend if self.backend in EXACT_BACKENDS else "faiss"
                engine = _EXACT[name](self.index.embeddings[rows])
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
        scores, local = engine.search(queries, k)
        # An approximate search may find fewer than k (FAISS pads with row -1): keep the found ones.
        if np.any(local < 0):
            found = int((local >= 0).sum(axis=1).min())
            scores, local = scores[:, :found], local[:, :found]
        return self.index.product_ids[rows[local]], d_star_from_scores(scores).astype(np.float32)
