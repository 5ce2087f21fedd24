"""Exact per-category search: hand-worked ranking, backends agree with brute force, ties are stable."""

import numpy as np
import pytest

from ctl_keras.retrieval.index import CatalogIndex
from ctl_keras.retrieval.search import BACKENDS, Searcher

CATS = ("tops", "shoes")


def _hand_index():
    # rows: p0 shoes (1,0), p1 tops (0,1), p2 shoes (0.6,0.8), p3 shoes (-1,0), p4 shoes (0.8,0.6)
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0], [0.8, 0.6]], np.float32)
    return CatalogIndex(np.array(["p0", "p1", "p2", "p3", "p4"]), np.array([1, 0, 1, 1, 1]), emb, CATS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_worked_ranking(backend):
    """q=(1,1): shoes scores p0 1.0, p2 1.4, p3 -1.0, p4 1.4 -> p2, p4 (tie, lower row first), p0;
    d* = 2 - score = 0.6, 0.6, 1.0. p1 (tops, score 1) is never returned for shoes."""
    ids, d = Searcher(_hand_index(), backend).search(np.array([1.0, 1.0]), "shoes", 3)
    assert list(ids[0]) == ["p2", "p4", "p0"]
    np.testing.assert_allclose(d[0], [0.6, 0.6, 1.0], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_category_returns_whole_category(backend):
    ids, d = Searcher(_hand_index(), backend).search(np.array([[1.0, 1.0], [0.0, 1.0]]), "tops", 10)
    assert ids.tolist() == [["p1"], ["p1"]]
    np.testing.assert_allclose(d, [[1.0], [1.0]], atol=1e-6)


def test_backends_equal_brute_force_on_random_catalog():
    """500 random unit vectors in 3 categories, 4 queries: every backend == argsort of masked q·f."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cats = rng.integers(0, 3, 500)
    index = CatalogIndex(np.array([f"id{i}" for i in range(500)]), cats, emb, ("a", "b", "c"))
    queries = rng.normal(size=(4, 16)).astype(np.float32)
    members = np.flatnonzero(cats == 1)
    scores = queries @ emb[members].T
    expected = index.product_ids[members[np.argsort(-scores, axis=1, kind="stable")[:, :20]]]
    for backend in BACKENDS:
        ids, d = Searcher(index, backend).search(queries, "b", 20)
        np.testing.assert_array_equal(ids, expected, err_msg=backend)
        np.testing.assert_allclose(d, 2 - np.sort(scores, axis=1)[:, ::-1][:, :20], atol=1e-5)
        assert np.all(np.diff(d, axis=1) >= 0)


def test_bad_queries_are_refused():
    searcher = Searcher(_hand_index())
    with pytest.raises(ValueError, match="query is 3-d but the index holds 2-d"):
        searcher.search(np.ones(3), "shoes", 1)
    with pytest.raises(ValueError, match="unknown category 'hats'; valid: tops, shoes"):
        searcher.search(np.ones(2), "hats", 1)
    with pytest.raises(ValueError, match="unknown backend 'annoy'"):
        Searcher(_hand_index(), "annoy")
