"""Ranking metrics on plain numpy arrays, shared by training-time validation and evaluation."""

from __future__ import annotations

import numpy as np


def binary_auc(d_pos: np.ndarray, d_neg: np.ndarray) -> float:
    """Fraction of binary questions where the positive is closer than the negative (ties count 1/2).

    With one negative per question this is the AUC of the paper (§5.2).
    """
    d_pos = np.asarray(d_pos, dtype=np.float64).reshape(-1)
    d_neg = np.asarray(d_neg, dtype=np.float64).reshape(-1)
    if d_pos.shape != d_neg.shape:
        raise ValueError(f"d_pos has {d_pos.size} values but d_neg has {d_neg.size}")
    if d_pos.size == 0:
        raise ValueError("no questions to score: the split is empty")
    return float(np.mean((d_pos < d_neg) + 0.5 * (d_pos == d_neg)))


def positive_ranks(distances: np.ndarray, positive_index: np.ndarray) -> np.ndarray:
    """0-based rank of each row's positive among its candidates (lower distance ranks first).

    Ties are broken pessimistically: a candidate at the same distance as the positive ranks ahead
    of it, so a constant scorer gets no credit.
    """
    distances = np.asarray(distances, dtype=np.float64)
    rows = np.arange(distances.shape[0])
    d_pos = distances[rows, positive_index]
    ahead = (distances <= d_pos[:, None]).sum(axis=1) - 1
    return ahead


def topk_accuracy(ranks: np.ndarray, k_max: int) -> np.ndarray:
    """acc[k-1] = fraction of queries whose positive is within the top k, for k = 1..k_max."""
    ranks = np.asarray(ranks).reshape(-1)
    if ranks.size == 0:
        raise ValueError("no queries to score: the split is empty")
    ks = np.arange(1, k_max + 1)
    return (ranks[None, :] < ks[:, None]).mean(axis=1)
