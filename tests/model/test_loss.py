"""Triplet hinge [d+ - d- + α]₊ as a function and as a keras Loss."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from ctl_keras.model.loss import TripletHingeLoss, triplet_hinge

D_POS = np.array([0.5, 1.0, 0.2], "float32")
D_NEG = np.array([1.0, 0.5, 0.3], "float32")


def test_hinge_per_example():
    """α=.2: [.5-1+.2, 1-.5+.2, .2-.3+.2]₊ = [0, .7, .1]; α=1: [.5, 1.5, .9]."""
    np.testing.assert_allclose(np.asarray(triplet_hinge(D_POS, D_NEG)), [0.0, 0.7, 0.1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(triplet_hinge(D_POS, D_NEG, margin=1.0)), [0.5, 1.5, 0.9], atol=1e-6)


def test_loss_class_mean_and_config():
    """y_pred = stack([d+, d-]) -> mean([0, .7, .1]) = 0.8/3; y_true ignored; margin survives config."""
    loss = TripletHingeLoss()
    y_pred = np.stack([D_POS, D_NEG], axis=-1)
    value = float(loss(np.zeros(3, "float32"), y_pred))
    assert abs(value - 0.8 / 3) < 1e-6
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(TripletHingeLoss(0.5)))
    assert isinstance(revived, TripletHingeLoss) and revived.margin == 0.5
