"""Distances of docs/design.md §3 on unit vectors, and the PairDistance layer per variant."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tests.helpers.layer_testing import run_layer_test

from ctl_keras.model import distances
from ctl_keras.model.distances import (PairDistance, global_distance, hybrid_distance, local_distance,
                                       uniform_attention)

E1, E2 = np.array([1.0, 0.0], "float32"), np.array([0.0, 1.0], "float32")
# One scene: f_s = e2, regions [e1, e2] with a = [.25, .75]; product f_p = e1.
F_S, F_P = E2[None], E1[None]
F_LOCAL = np.stack([E1, E2])[None]
ATT = np.array([[0.25, 0.75]], "float32")


def test_global_on_unit_vectors():
    """||e1-e1||²=0, ||e1-e2||²=2, ||e1-(-e1)||²=4."""
    out = np.asarray(global_distance(np.stack([E1, E1, E1]), np.stack([E1, E2, -E1])))
    np.testing.assert_allclose(out, [0.0, 2.0, 4.0], atol=1e-6)


def test_local_hybrid_uniform():
    """local = .25*0 + .75*2 = 1.5; hybrid = (2 + 1.5)/2 = 1.75; uniform a = [.5,.5] -> local 1.0."""
    np.testing.assert_allclose(np.asarray(local_distance(F_LOCAL, ATT, F_P)), [1.5], atol=1e-6)
    np.testing.assert_allclose(np.asarray(hybrid_distance(F_S, F_LOCAL, ATT, F_P)), [1.75], atol=1e-6)
    uniform = np.asarray(uniform_attention(F_LOCAL))
    np.testing.assert_allclose(uniform, [[0.5, 0.5]], atol=1e-7)
    np.testing.assert_allclose(np.asarray(local_distance(F_LOCAL, uniform, F_P)), [1.0], atol=1e-6)


@pytest.mark.parametrize("variant,expected", [("hybrid", 1.75), ("global", 2.0), ("local", 1.5),
                                              ("local_uniform", 1.0)])
def test_pair_distance_variants(variant, expected, tmp_path):
    """Same numbers as above, chosen by the layer's variant; shape, config and save/reload round trips."""
    inputs = {"scene_embedding": F_S, "local_embeddings": F_LOCAL, "attention": ATT, "product_embedding": F_P}
    out = run_layer_test(PairDistance, {"variant": variant}, inputs, (1,), tmp_path=tmp_path,
                         expected_num_trainable_weights=0)
    np.testing.assert_allclose(out, [expected], atol=1e-6)
    assert PairDistance.from_config(PairDistance(variant).get_config()).variant == variant


def test_global_variant_needs_no_local_inputs_and_bad_variant_refused():
    out = PairDistance("global")({"scene_embedding": F_S, "product_embedding": F_P})
    np.testing.assert_allclose(np.asarray(out), [2.0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        PairDistance("nope")


def test_d_star_matrix_paired_and_from_scores():
    """d* = 2 - q·f_p by hand: one query row against two products, and row-by-row."""
    q = np.array([[1.0, 0.0], [0.6, 0.8]])
    f = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(distances.d_star(q, f), [[1.0, 2.0], [1.4, 1.2]])
    np.testing.assert_allclose(distances.d_star(q[1], f), [1.4, 1.2])
    np.testing.assert_allclose(distances.d_star(q, f, paired=True), [1.0, 1.2])
    assert distances.d_star(q, f).dtype == np.float64
    np.testing.assert_allclose(distances.d_star_from_scores(np.array([0.5, -1.0])), [1.5, 3.0])
