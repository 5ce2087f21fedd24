"""The one negative-sampling rule: same category, not a product of the pair's scene, skip when none."""

import numpy as np

from ctl_keras.data import negatives

# Products 0,1,2 are category 0; 3 is alone in category 1; 4,5 are category 2.
PRODUCT_CATEGORIES = [0, 0, 0, 1, 2, 2]
# Pairs: scene A holds products 0 and 1 and 4; B holds 2; C holds 3; D holds 4 and 5; E holds 5.
SCENES = ["A", "A", "A", "B", "C", "D", "D", "E"]
POSITIVES = [0, 1, 4, 2, 3, 4, 5, 5]


def test_sampler_excludes_every_product_of_the_scene_and_skips_pairs_without_negative():
    """Hand-worked: A's category-0 pairs may only draw 2; B's draws 0 or 1; A's and E's category-2 pairs
    draw the other one of 4/5; C (alone in its category) and D (both category-2 products) get -1."""
    sampler = negatives.NegativeSampler(SCENES, POSITIVES, PRODUCT_CATEGORIES)
    assert sampler.skipped == 3
    allowed = [{2}, {2}, {5}, {0, 1}, {-1}, {-1}, {-1}, {4}]
    seen = [set() for _ in SCENES]
    rng = np.random.default_rng(0)
    for _ in range(50):
        for i, neg in enumerate(sampler.sample(rng)):
            seen[i].add(int(neg))
    assert seen == allowed  # every valid negative appears, nothing else ever does


def test_sampler_is_uniform_over_valid_negatives():
    """Category of 5 products, scene holding 1 and 3: draws for it are 0, 2, 4, each about 1/3."""
    sampler = negatives.NegativeSampler(["S", "S"], [1, 3], [0] * 5)
    draws = np.concatenate([sampler.sample(np.random.default_rng(i)) for i in range(600)])
    values, counts = np.unique(draws, return_counts=True)
    assert values.tolist() == [0, 2, 4]
    assert np.all(np.abs(counts / draws.size - 1 / 3) < 0.05)


def test_candidates_per_draw_and_skip_count_for_streams():
    """A has two category-0 products -> draws of 3; with category sizes {0: 3, 1: 1, 2: 2} the pairs of
    C and D are skipped (3 pairs), as the sampler says."""
    cats = np.array(PRODUCT_CATEGORIES)[POSITIVES]
    assert negatives.candidates_per_draw(SCENES, cats) == 3
    assert negatives.count_without_negative(SCENES, POSITIVES, cats, {0: 3, 1: 1, 2: 2}) == 3
    assert negatives.pair_key(b"A", "t0") == "A\x1ft0"
