"""metrics: hand-worked AUC with ties, pessimistic ranks, Top-K boundaries and bad inputs."""

import numpy as np
import pytest

from ctl_keras.evaluation import ranking as metrics


def test_binary_auc_counts_ties_as_half():
    """Questions: pos closer (1), pos farther (0), tie (1/2), pos closer (1) -> 2.5 / 4 = 0.625."""
    assert metrics.binary_auc([0.1, 0.9, 0.5, 0.0], [0.2, 0.3, 0.5, 4.0]) == 0.625


def test_binary_auc_rejects_mismatched_or_empty():
    with pytest.raises(ValueError, match="d_pos has 2 values but d_neg has 3"):
        metrics.binary_auc([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no questions"):
        metrics.binary_auc([], [])


def test_positive_ranks_are_zero_based_and_pessimistic():
    """Row 0: positive (index 1) strictly best -> rank 0. Row 1: positive (index 0, d=0.5) tied with
    index 2 and beaten by index 1 -> 1 ahead + 1 tie = rank 2. Row 2: positive worst of 3 -> rank 2."""
    distances = np.array([[0.9, 0.1, 0.5], [0.5, 0.2, 0.5], [3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(metrics.positive_ranks(distances, np.array([1, 0, 0])), [0, 2, 2])


def test_topk_accuracy_boundaries():
    """Ranks 0, 1, 4: Top-1 = 1/3 (rank 0), Top-2 = 2/3 (ranks 0, 1), Top-5 = 1 (rank 4 is the 5th)."""
    acc = metrics.topk_accuracy(np.array([0, 1, 4]), 5)
    np.testing.assert_allclose(acc, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 1.0])
    with pytest.raises(ValueError, match="no queries"):
        metrics.topk_accuracy(np.zeros(0, np.int64), 3)
