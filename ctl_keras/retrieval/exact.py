"""Exact maximum-inner-product search (numpy, tf, faiss flat) and the per-category base of the backends.

Because d*(s,p) = 2 - q·f_p (docs/design.md §3), the products nearest a (scene, category) are the
products of that category with the largest q·f_p. `PerCategory` implements the contract's bookkeeping
once (backend.py): the catalog arrays, query checks, add/remove by product id (rows replaced in place,
new ids appended, removed rows dropped: the order `recommend index --update` keeps) and an engine per
category built on first use. A subclass says how to build a category's engine (`_engine`); an engine
answers `search(queries, k)` with (scores, rows within the category), best first, ties by row.
"""

from __future__ import annotations

import numpy as np

from ctl_keras.model.distances import d_star_from_scores
from ctl_keras.retrieval.backend import SearchBackend
from ctl_keras.retrieval.index import CatalogIndex


def numpy_topk(scores: np.ndarray, k: int) -> np.ndarray:
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


class NumpyEngine:
    """Brute force in numpy: matmul, then an O(n) partition."""

    def __init__(self, matrix: np.ndarray):
        self.matrix = matrix

    def search(self, queries: np.ndarray, k: int):
        scores = queries @ self.matrix.T
        local = numpy_topk(scores, k)
        return np.take_along_axis(scores, local, axis=1), local


class FaissFlatEngine:
    """Brute force in FAISS (IndexFlatIP): exact, the fastest exact engine from 100k products up."""

    def __init__(self, matrix: np.ndarray):
        self.engine = import_faiss().IndexFlatIP(matrix.shape[1])
        self.engine.add(matrix)

    def search(self, queries, k):
        return stable_order(*self.engine.search(queries, k))


class PerCategory(SearchBackend):
    """Catalog arrays + one engine per category, built on first use and dropped when it changes."""

    def __init__(self, index: CatalogIndex, **options):
        self.index, self.options = index, options
        self._cache: dict[int, tuple[np.ndarray, object]] = {}

    @classmethod
    def build(cls, index: CatalogIndex, **options):
        return cls(index, **options)

    def _engine(self, c: int, matrix: np.ndarray):
        raise NotImplementedError

    def category(self, c: int):
        """(catalog rows of category c, its engine)."""
        if c not in self._cache:
            rows = np.flatnonzero(self.index.category_ids == c)
            self._cache[c] = rows, (self._engine(c, self.index.embeddings[rows]) if len(rows) else None)
        return self._cache[c]

    def _changed(self, categories: set[int]) -> None:
        """After add/remove: drop the changed categories' engines; the others keep theirs (their products
        and order are unchanged) but their catalog rows are looked up again (rows before them may be gone)."""
        for c in list(self._cache):
            if c in categories:
                del self._cache[c]
            else:
                self._cache[c] = np.flatnonzero(self.index.category_ids == c), self._cache[c][1]

    def check(self, queries, category: str, k: int) -> tuple[np.ndarray, int]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.ndim != 2 or queries.shape[1] != self.index.embedding_dim:
            raise ValueError(f"query is {queries.shape[-1]}-d but the index holds {self.index.embedding_dim}-d embeddings")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return queries, self.index.category_id(category)

    def search(self, queries, category: str, k: int):
        queries, c = self.check(queries, category, k)
        rows, engine = self.category(c)
        k = min(k, len(rows))
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(str), empty.astype(np.float32)
        scores, local = engine.search(queries, k)
        # An approximate engine may find fewer than k (FAISS pads with row -1): keep the found ones.
        if np.any(local < 0):
            found = int((local >= 0).sum(axis=1).min())
            scores, local = scores[:, :found], local[:, :found]
        return self.index.product_ids[rows[local]], d_star_from_scores(scores).astype(np.float32)

    def add(self, ids, embeddings, categories) -> None:
        """Upsert: an id already in the catalog gets its new vector and category in place, new ids are appended."""
        ids = np.asarray(ids).astype(str)
        embeddings = np.asarray(embeddings, np.float32).reshape(len(ids), self.index.embedding_dim)
        categories = np.asarray(categories, np.int32)
        old = self.index
        row_of = {p: i for i, p in enumerate(old.product_ids)}
        pids, cats, emb = list(old.product_ids), list(old.category_ids), list(old.embeddings)
        changed = set()
        for p, e, c in zip(ids, embeddings, categories):
            if p in row_of:
                i = row_of[p]
                changed |= {int(cats[i]), int(c)}
                cats[i], emb[i] = c, e
            else:
                row_of[p] = len(pids)
                pids.append(p), cats.append(c), emb.append(e)
                changed.add(int(c))
        self.index = CatalogIndex(np.array(pids, str), np.array(cats, np.int32),
                                  np.array(emb, np.float32).reshape(len(pids), old.embedding_dim),
                                  old.categories, old.meta)
        self._changed(changed)

    def remove(self, ids) -> None:
        drop = np.isin(self.index.product_ids, np.asarray(list(ids)).astype(str))
        old = self.index
        self.index = CatalogIndex(old.product_ids[~drop], old.category_ids[~drop], old.embeddings[~drop],
                                  old.categories, old.meta)
        self._changed({int(c) for c in old.category_ids[drop]})


class NumpyExact(PerCategory):
    name, exact = "numpy", True

    def _engine(self, c, matrix):
        return NumpyEngine(matrix)


class FaissExact(PerCategory):
    name, exact = "faiss", True

    def _engine(self, c, matrix):
        return FaissFlatEngine(matrix)


class TFExact(PerCategory):
    """One retrieval.tf_search.BruteForce over the whole catalog, the module the recommender SavedModel holds."""

    name, exact = "tf", True

    def __init__(self, index, **options):
        super().__init__(index, **options)
        self._brute = None

    def _changed(self, categories):
        super()._changed(categories)
        self._brute = None

    def _engine(self, c, matrix):
        return _TFCategory(self, c)


class _TFCategory:
    def __init__(self, backend: TFExact, c: int):
        self.backend, self.c = backend, c

    def search(self, queries, k):
        import tensorflow as tf

        from ctl_keras.savedmodel.top_k import BruteForce

        b = self.backend
        if b._brute is None:
            b._brute = BruteForce(b.index.embeddings, b.index.category_ids, b.index.product_ids)
        top, rows = b._brute.top_k(tf.constant(queries), tf.fill([len(queries)], self.c), k)
        # Catalog rows -> rows within the category (k <= the category's size, so every slot is real).
        local = np.searchsorted(b.category(self.c)[0], rows.numpy())
        return top.numpy(), local


CLASSES = {"numpy": NumpyExact, "tf": TFExact, "faiss": FaissExact}
