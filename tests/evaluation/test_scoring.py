"""Scoring on hand-made rankings: AUC and Top-K for perfect, reversed and constant scorers."""

import numpy as np
import pytest

from ctl_keras.evaluation.scoring import ScoreTable, inner_product_distance, score_split, squared_l2_distance

CATS = ("tops", "shoes")


def _table():
    """4 pairs (3 tops, 1 shoes); products t0..t2 (tops), s0..s1 (shoes); pair i's positive given below.

    Scene reps are the index of the pair's positive, product reps their own index: a scorer that
    compares the two knows the answer.
    """
    product_ids = ["t0", "t1", "t2", "s0", "s1"]
    positives = ["t0", "t1", "t2", "s1"]
    return ScoreTable(
        pair_ids=np.array([10, 11, 12, 13]), pair_categories=np.array([0, 0, 0, 1]), positive_ids=positives,
        scene_reps=np.array([[product_ids.index(p)] for p in positives], float),
        product_ids=product_ids, product_categories=np.array([0, 0, 0, 1, 1]),
        product_reps=np.arange(5, dtype=float)[:, None])


QUESTIONS = [{"question_id": 0, "pair_id": 10, "positive": "t0", "negative": "t2"},
             {"question_id": 1, "pair_id": 11, "positive": "t1", "negative": "t0"},
             {"question_id": 2, "pair_id": 13, "positive": "s1", "negative": "s0"}]


def perfect(s, p):
    return np.abs(s[:, :1] - p[:, 0][None, :])


def test_perfect_scorer():
    """Distance 0 to the positive and >= 1 to everything else: AUC 1 and Top-1 1 everywhere."""
    r = score_split(_table(), perfect, QUESTIONS, CATS, k_max=3)
    assert r["auc"] == 1.0 and r["topk"] == [1.0, 1.0, 1.0]
    assert r["per_category"]["tops"]["num_candidates"] == 3
    assert r["per_category"]["shoes"]["auc"] == 1.0 and r["num_queries"] == 4


def test_reversed_scorer():
    """Negated distances put the positive last: AUC 0; with 3 tops the positive is rank 3 (Top-2 0)."""
    r = score_split(_table(), lambda s, p: -perfect(s, p), QUESTIONS, CATS, k_max=3)
    assert r["auc"] == 0.0
    assert r["per_category"]["tops"]["topk"] == [0.0, 0.0, 1.0]
    # shoes has 2 candidates: the positive is last = rank 2, so Top-1 0 and Top-2 1.
    assert r["per_category"]["shoes"]["topk"] == [0.0, 1.0, 1.0]


def test_constant_scorer_is_half_auc_and_pessimistic_topk():
    """All distances equal: every question is a tie (1/2) and every positive ranks last."""
    r = score_split(_table(), lambda s, p: np.zeros((len(s), len(p))), QUESTIONS, CATS, k_max=3)
    assert r["auc"] == 0.5
    # 3 tops queries reach the top only at K=3, the shoes query at K=2: [0, 1/4, 1].
    assert r["topk"] == [0.0, 0.25, 1.0]


def test_other_categories_are_never_candidates():
    """A scorer that puts every SHOES product at distance 0 from every scene (and tops at 1 + |index
    gap|): if shoes leaked into the tops candidate sets, each tops positive would rank behind 2 shoes
    (Top-1 0). With the per-category mask, tops are ranked only against tops (Top-1 1)."""
    def shoes_first(s, p):
        return np.where(p[:, 0][None, :] >= 3, 0.0, 1.0 + perfect(s, p))

    r = score_split(_table(), shoes_first, QUESTIONS, CATS, k_max=3)
    assert r["per_category"]["tops"]["topk"] == [1.0, 1.0, 1.0]
    assert r["per_category"]["tops"]["auc"] == 1.0 and r["per_category"]["tops"]["num_candidates"] == 3


def test_question_across_categories_is_a_clear_error():
    """A question whose negative (s0, shoes) is not of the pair's category (tops) is refused by name."""
    bad = [dict(QUESTIONS[0], negative="s0")]
    with pytest.raises(ValueError, match="'s0' is not of category 'tops'"):
        score_split(_table(), perfect, bad, CATS, k_max=2)


def test_missing_and_empty_inputs():
    with pytest.raises(ValueError, match="no questions"):
        score_split(_table(), perfect, [], CATS, k_max=2)
    bad = [dict(QUESTIONS[0], negative="zz")]
    with pytest.raises(ValueError, match="'zz'"):
        score_split(_table(), perfect, bad, CATS, k_max=2)
    empty = ScoreTable(np.zeros(0, np.int64), np.zeros(0, np.int32), [], np.zeros((0, 1)), [], np.zeros(0), np.zeros((0, 1)))
    with pytest.raises(ValueError, match="empty test split"):
        score_split(empty, perfect, QUESTIONS, CATS, k_max=2)


def test_distance_helpers():
    """‖(1,0) − (0,1)‖² = 2 and 2 − q·f for q = f = (1,0) is 1."""
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(squared_l2_distance(a, b), [[2.0, 0.0]])
    np.testing.assert_allclose(inner_product_distance()(a, b), [[2.0, 1.0]])


def test_topk_leaves_out_the_scenes_other_positives():
    """Pairs 10 and 11 are one scene holding tops t0 and t1; the scorer ranks t1 first for every tops
    query. Pair 10 (positive t0): t1 is also a correct answer, so it is no candidate and t0 ranks 1st
    (Top-1 hit); with each pair its own scene (scene_ids None), t1 stays ahead and pair 10 misses."""
    order = np.array([1.0, 0.0, 2.0, 0.0, 1.0])  # t1 < t0 < t2 for tops; s0 < s1 for shoes

    def t1_first(s, p):
        return np.tile(order[p[:, 0].astype(int)], (len(s), 1))

    table = _table()
    alone = score_split(table, t1_first, QUESTIONS, CATS, k_max=3)
    assert alone["per_category"]["tops"]["topk"][0] == pytest.approx(1 / 3)  # only pair 11 (t1) hits
    assert alone["excluded_candidates"] == 0
    table.scene_ids = ["A", "A", "B", "C"]
    shared = score_split(table, t1_first, QUESTIONS, CATS, k_max=3)
    tops = shared["per_category"]["tops"]
    # Pair 10 now hits at K=1 too; pair 12 (scene B, t2) keeps both other tops ahead of it.
    assert tops["topk"] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert tops["excluded_candidates"] == 2 and shared["excluded_candidates"] == 2  # t1 for 10, t0 for 11
    assert shared["auc"] == alone["auc"]  # the questions never pair a scene with its own products
    assert "except the scene's other products" in shared["candidate_set"]
