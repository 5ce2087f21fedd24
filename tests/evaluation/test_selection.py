"""The one selection policy (validation period, lr pick) and the multi-seed statistics."""

import numpy as np
import pytest

from ctl_keras.evaluation import selection


@pytest.mark.parametrize("epochs,every,expected", [(100, 10, 10), (5, 10, 1), (40, 5, 5), (40, 10, 8),
                                                    (12, 10, 2), (3, 10, 1), (2, 1, 1)])
def test_validation_every_gives_at_least_five_validations(epochs, every, expected):
    got = selection.validation_every(epochs, every)
    assert got == expected
    validations = len({e for e in range(1, epochs + 1) if e % got == 0} | {epochs})
    assert validations >= min(5, epochs)


def test_pick_learning_rate_by_validation_then_smaller():
    assert selection.pick_learning_rate({1e-3: 0.7, 3e-4: 0.8, 1e-4: 0.75}) == 3e-4
    assert selection.pick_learning_rate({1e-3: 0.8, 1e-4: 0.8}) == 1e-4
    with pytest.raises(ValueError, match="no learning rate"):
        selection.pick_learning_rate({})
    with pytest.raises(ValueError, match="positive"):
        selection.check_grid([1e-3, 0])


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_questions():
    rng = np.random.default_rng(0)
    small = (rng.random((3, 100)) < 0.7).astype(float)
    large = (rng.random((3, 4000)) < 0.7).astype(float)
    lo_s, hi_s = selection.bootstrap_interval(small)
    lo_l, hi_l = selection.bootstrap_interval(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 4  # ~ 1 / sqrt(40) of the width
    # Binomial standard error at p=0.7, n=4000 x 3 seeds that agree on nothing: width ~ 4 * 0.0072 / sqrt(3)
    assert 0.01 < hi_l - lo_l < 0.03
    assert selection.bootstrap_interval(large) == (lo_l, hi_l)  # seeded


def test_summarize_mean_std_and_interval():
    per_seed = [{"auc": 0.5, "topk": [0.1, 0.2], "question_outcomes": [1, 0, 0.5, 0.5]},
                {"auc": 0.75, "topk": [0.3, 0.4], "question_outcomes": [1, 1, 0.5, 0.5]}]
    out = selection.summarize(per_seed)
    assert out["auc_mean"] == pytest.approx(0.625) and out["auc_std"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert out["topk_mean"] == pytest.approx([0.2, 0.3]) and out["seeds"] == 2 and out["num_questions"] == 4
    assert 0.0 <= out["auc_ci95"][0] <= out["auc_mean"] <= out["auc_ci95"][1] <= 1.0
    with pytest.raises(ValueError, match="different question sets"):
        selection.summarize([per_seed[0], {**per_seed[1], "question_outcomes": [1]}])
