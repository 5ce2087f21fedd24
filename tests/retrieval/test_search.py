"""Exact per-category search: hand-worked ranking, backends agree with brute force, ties are stable."""

import numpy as np
import pytest

from ctl_keras.retrieval.backend import EXACT_BACKENDS as BACKENDS
from ctl_keras.retrieval.index import CatalogIndex
from ctl_keras.retrieval.search import open_backend

CATS = ("tops", "shoes")


def _hand_index():
    # rows: p0 shoes (1,0), p1 tops (0,1), p2 shoes (0.6,0.8), p3 shoes (-1,0), p4 shoes (0.8,0.6)
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0], [0.8, 0.6]], np.float32)
    return CatalogIndex(np.array(["p0", "p1", "p2", "p3", "p4"]), np.array([1, 0, 1, 1, 1]), emb, CATS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_worked_ranking(backend):
    """q=(1,1): shoes scores p0 1.0, p2 1.4, p3 -1.0, p4 1.4 -> p2, p4 (tie, lower row first), p0;
    d* = 2 - score = 0.6, 0.6, 1.0. p1 (tops, score 1) is never returned for shoes."""
    ids, d = open_backend(_hand_index(), backend).search(np.array([1.0, 1.0]), "shoes", 3)
    assert list(ids[0]) == ["p2", "p4", "p0"]
    np.testing.assert_allclose(d[0], [0.6, 0.6, 1.0], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_larger_than_category_returns_whole_category(backend):
    ids, d = open_backend(_hand_index(), backend).search(np.array([[1.0, 1.0], [0.0, 1.0]]), "tops", 10)
    assert ids.tolist() == [["p1"], ["p1"]]
    np.testing.assert_allclose(d, [[1.0], [1.0]], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_at_the_cut_keep_the_lower_rows(backend):
    """Rows 1..7 are one vector (duplicate product images), so q=(1,0) scores them all 1.0 and row 0
    scores 0: top-k must be the lowest tied rows p1..pk (d* 1.0), not whichever rows argpartition kept
    (for k=5 it used to keep p6 instead of p5)."""
    emb = np.array([[0, 1]] + [[1, 0]] * 7, np.float32)
    index = CatalogIndex(np.array([f"p{i}" for i in range(8)]), np.zeros(8, np.int32), emb, ("all",))
    searcher = open_backend(index, backend)
    for k in (1, 3, 5, 7, 8):
        ids, d = searcher.search(np.array([[1.0, 0.0], [1.0, 0.0]]), "all", k)
        expected = [f"p{i}" for i in range(1, min(k, 7) + 1)] + (["p0"] if k == 8 else [])
        assert ids.tolist() == [expected, expected], (k, ids)
    np.testing.assert_allclose(d[0], [1.0] * 7 + [2.0], atol=1e-6)


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
        ids, d = open_backend(index, backend).search(queries, "b", 20)
        np.testing.assert_array_equal(ids, expected, err_msg=backend)
        np.testing.assert_allclose(d, 2 - np.sort(scores, axis=1)[:, ::-1][:, :20], atol=1e-5)
        assert np.all(np.diff(d, axis=1) >= 0)


def test_bad_queries_are_refused():
    searcher = open_backend(_hand_index())
    with pytest.raises(ValueError, match="query is 3-d but the index holds 2-d"):
        searcher.search(np.ones(3), "shoes", 1)
    with pytest.raises(ValueError, match="unknown category 'hats'; valid: tops, shoes"):
        searcher.search(np.ones(2), "hats", 1)
    with pytest.raises(ValueError, match="unknown backend 'annoy'"):
        open_backend(_hand_index(), "annoy")
