"""Triplet hinge [d+ - d- + α]₊ per example."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from ctl_keras.model.loss import triplet_hinge

D_POS = np.array([0.5, 1.0, 0.2], "float32")
D_NEG = np.array([1.0, 0.5, 0.3], "float32")


def test_hinge_per_example():
    """α=.2: [.5-1+.2, 1-.5+.2, .2-.3+.2]₊ = [0, .7, .1]; α=1: [.5, 1.5, .9]."""
    np.testing.assert_allclose(np.asarray(triplet_hinge(D_POS, D_NEG)), [0.0, 0.7, 0.1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(triplet_hinge(D_POS, D_NEG, margin=1.0)), [0.5, 1.5, 0.9], atol=1e-6)
