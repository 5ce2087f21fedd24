"""One selection policy for every method, and the statistics of a multi-seed table.

- `validation_every`: how often a run validates, so that every run validates at least
  MIN_VALIDATIONS times whatever its epoch count (the paper: every 10 of 100 epochs = 10 times).
- `pick_learning_rate`: each trained method, ours included, picks its Adam learning rate from the
  same small grid (LR_GRID) by validation AUC; ties go to the smaller rate.
- `summarize`: mean ± std of the test AUC over seeds, and a 95% bootstrap interval over questions:
  questions are resampled with replacement (the same resample for every seed) and the seed-mean AUC
  recomputed, 2.5th and 97.5th percentiles of BOOTSTRAP_SAMPLES resamples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_VALIDATIONS = 5
LR_GRID = (1e-4, 3e-4, 1e-3)
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 22


def validation_every(epochs: int, eval_every: int, min_validations: int = MIN_VALIDATIONS) -> int:
    """The validation period (in epochs) that gives at least min(min_validations, epochs) validations:
    `eval_every` when that already does, else epochs // min_validations (at least 1)."""
    if epochs < 1 or eval_every < 1:
        raise ValueError(f"epochs ({epochs}) and eval_every ({eval_every}) must be at least 1")
    return max(1, min(eval_every, epochs // min_validations))


def pick_learning_rate(val_auc_by_lr: dict) -> float:
    """The learning rate with the highest validation AUC (ties: the smaller rate)."""
    if not val_auc_by_lr:
        raise ValueError("no learning rate was tried")
    return min(val_auc_by_lr, key=lambda lr: (-float(val_auc_by_lr[lr]), float(lr)))


def check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    grid = tuple(float(g) for g in grid)
    if not grid or any(not g > 0 for g in grid):
        raise ValueError(f"learning-rate grid {list(grid)} must be non-empty and positive")
    return tuple(sorted(set(grid)))


def bootstrap_interval(outcomes: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED,
                       level: float = 0.95) -> tuple[float, float]:
    """95% percentile interval of the seed-mean AUC; `outcomes` [seeds, questions] of 1 / 0.5 / 0."""
    outcomes = np.atleast_2d(np.asarray(outcomes, np.float64))
    n = outcomes.shape[1]
    if n == 0:
        raise ValueError("no questions to bootstrap")
    rng = np.random.default_rng(seed)
    per_question = outcomes.mean(axis=0)  # the seed mean is linear: resample the per-question mean
    means = np.empty(samples)
    for start in range(0, samples, 250):
        idx = rng.integers(n, size=(min(250, samples - start), n))
        means[start:start + len(idx)] = per_question[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def summarize(per_seed: Sequence[dict]) -> dict:
    """{"auc_mean", "auc_std", "auc_ci95", "seeds", "num_questions", "topk_mean"} from per-seed scores
    that each carry "auc", "topk" and "question_outcomes" (the same questions in the same order)."""
    if not per_seed:
        raise ValueError("no seed finished")
    outcomes = [np.asarray(r["question_outcomes"], np.float64) for r in per_seed]
    if len({o.size for o in outcomes}) != 1:
        raise ValueError("the seeds were scored on different question sets")
    aucs = np.array([float(r["auc"]) for r in per_seed])
    low, high = bootstrap_interval(np.stack(outcomes))
    return {"auc_mean": float(aucs.mean()), "auc_std": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
            "auc_ci95": [low, high], "seeds": len(per_seed), "num_questions": int(outcomes[0].size),
            "topk_mean": np.mean([r["topk"] for r in per_seed], axis=0).tolist(),
            "auc_per_seed": aucs.tolist()}
