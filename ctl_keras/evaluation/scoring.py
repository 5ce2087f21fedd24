"""Score any method on a split: binary-choice AUC on the fixed questions and Top-K over a category.

A method is reduced to three things: one representation per test pair (the scene, asked with the
pair's category), one per test product, and a function giving the [n, m] distance matrix between
them (lower = more compatible). Our model, every baseline and the hand-made scorers in the tests go
through the same code, so their numbers are comparable.

Top-K candidate set: for a test pair of category c, the products of category c in the same split are
ranked (the positive included, nothing else from other categories), EXCEPT the scene's other products
of category c: they are correct answers too (two pillows in one room), so ranking them above the
asked positive is no error. They are removed from that pair's candidates (counted as
"excluded_candidates"), which keeps one positive per query as in the paper. K runs 1..k_max. Ties
are broken pessimistically (metrics.positive_ranks), so a constant scorer gets Top-K = 0 until K
covers the set.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ctl_keras.evaluation import ranking as metrics
from ctl_keras.model.distances import D_STAR_OFFSET, d_star

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

CANDIDATE_SET = ("Top-K ranks, for each test pair, ALL products of the asked category in the test split (the "
                 "positive included) except the scene's other products of that category, which are correct "
                 "answers too and are left out; ties count against the method.")


@dataclasses.dataclass
class ScoreTable:
    """Representations of one split, aligned with its pairs and products."""

    pair_ids: np.ndarray  # [N] int64
    pair_categories: np.ndarray  # [N] int32, the asked category
    positive_ids: Sequence[str]  # [N]
    scene_reps: np.ndarray  # [N, ...]
    product_ids: Sequence[str]  # [M]
    product_categories: np.ndarray  # [M] int32
    product_reps: np.ndarray  # [M, ...]
    # [N] scene of each pair; None: every pair is its own scene (nothing is excluded from Top-K).
    scene_ids: Sequence[str] | None = None


def score_split(table: ScoreTable, distance_fn: DistanceFn, questions: list[dict],
                categories: Sequence[str], k_max: int) -> dict:
    """AUC on `questions` and Top-1..k_max over each category's products, overall and per category.

    Returns {"auc", "num_questions", "question_outcomes", "topk": [k_max floats], "num_queries", "excluded_candidates",
    "candidate_set", "per_category": {name: {"auc", "num_questions", "topk", "num_queries",
    "num_candidates", "excluded_candidates"}}}.
    """
    if len(table.pair_ids) == 0:
        raise ValueError("the split has no pairs to score (empty test split?)")
    if not questions:
        raise ValueError("the split has no questions to score (empty test split?)")
    pair_row = {int(p): i for i, p in enumerate(table.pair_ids)}
    product_row = {str(p): j for j, p in enumerate(table.product_ids)}
    pair_cat = np.asarray(table.pair_categories)
    prod_cat = np.asarray(table.product_categories)
    by_cat_q: dict[int, list[dict]] = {}
    for q in questions:
        if int(q["pair_id"]) not in pair_row:
            raise ValueError(f"question {q.get('question_id')} asks about pair {q['pair_id']}, which is not in the split")
        by_cat_q.setdefault(int(pair_cat[pair_row[int(q["pair_id"])]]), []).append(q)

    d_pos_all, d_neg_all, ranks_all, per_category = [], [], [], {}
    for c, name in enumerate(categories):
        rows = np.flatnonzero(pair_cat == c)
        cols = np.flatnonzero(prod_cat == c)
        qs = by_cat_q.get(c, [])
        if rows.size == 0 and not qs:
            continue
        if cols.size == 0:
            raise ValueError(f"category {name!r} has pairs but no products in the split")
        dist = np.asarray(distance_fn(table.scene_reps[rows], table.product_reps[cols]), np.float64)
        if dist.shape != (rows.size, cols.size):
            raise ValueError(f"distance function gave shape {dist.shape}, expected {(rows.size, cols.size)}")
        local_row = {int(r): i for i, r in enumerate(rows)}
        local_col = {int(j): i for i, j in enumerate(cols)}
        def col(product_id, local_col=local_col, name=name):
            return _col(product_row, local_col, product_id, name)

        pos_index = np.array([col(table.positive_ids[r]) for r in rows], np.int64)
        excluded = _other_scene_positives(table.scene_ids, rows, pos_index)
        ranked = dist.copy()
        ranked[excluded] = np.inf  # never ahead of the positive: out of the candidate set
        ranks = metrics.positive_ranks(ranked, pos_index) if rows.size else np.zeros(0, np.int64)
        d_pos = np.array([dist[local_row[pair_row[int(q["pair_id"])]], col(q["positive"])] for q in qs])
        d_neg = np.array([dist[local_row[pair_row[int(q["pair_id"])]], col(q["negative"])] for q in qs])
        entry = {"num_queries": int(rows.size), "num_candidates": int(cols.size), "num_questions": len(qs),
                 "excluded_candidates": int(excluded[0].size)}
        entry["auc"] = metrics.binary_auc(d_pos, d_neg) if qs else None
        entry["topk"] = metrics.topk_accuracy(ranks, k_max).tolist() if rows.size else None
        per_category[name] = entry
        d_pos_all.append(d_pos)
        d_neg_all.append(d_neg)
        ranks_all.append(ranks)
    d_pos, d_neg, ranks = (np.concatenate(x) for x in (d_pos_all, d_neg_all, ranks_all))
    # Per question 1 / 0.5 (tie) / 0, in category then file order (the same for every method): the
    # bootstrap of evaluation.selection resamples these.
    outcomes = (d_pos < d_neg) + 0.5 * (d_pos == d_neg)
    return {"auc": metrics.binary_auc(d_pos, d_neg), "num_questions": int(d_pos.size),
            "question_outcomes": outcomes.tolist(),
            "topk": metrics.topk_accuracy(ranks, k_max).tolist(), "num_queries": int(ranks.size),
            "k_max": int(k_max), "candidate_set": CANDIDATE_SET,
            "excluded_candidates": sum(e["excluded_candidates"] for e in per_category.values()),
            "per_category": per_category}


def _other_scene_positives(scene_ids, rows: np.ndarray, pos_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) indices into one category's [rows, cols] matrix of the other positives of each row's
    scene (same category by construction), never the row's own positive."""
    if scene_ids is None or rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    by_scene: dict[str, set] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(str(scene_ids[r]), set()).add(int(pos_index[i]))
    cells = [(i, j) for i, r in enumerate(rows) for j in sorted(by_scene[str(scene_ids[r])])
             if j != pos_index[i]]
    if not cells:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    out = np.array(cells, np.int64)
    return out[:, 0], out[:, 1]


def _col(product_row: dict, local_col: dict, product_id, category: str) -> int:
    """Column of `product_id` among the category's candidates; a clear error when it is not one."""
    key = product_id.decode() if isinstance(product_id, bytes) else str(product_id)
    if key not in product_row:
        raise ValueError(f"product {key!r} (category {category!r}) is not among the split's products")
    if product_row[key] not in local_col:
        raise ValueError(f"product {key!r} is not of category {category!r}, the category it is scored in")
    return local_col[product_row[key]]


# Distance functions shared by our model and the embedding baselines.
def inner_product_distance(offset: float = 2.0) -> DistanceFn:
    """d = offset − q·f: our d* (docs/design.md §3, model/distances.d_star) for unit vectors when offset is 2."""
    return lambda q, f: d_star(q, f) + (offset - D_STAR_OFFSET)


def squared_l2_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """‖a_i − b_j‖² for every pair of rows, without an [n, m, d] intermediate."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)
