"""CategoryAttention: a = softmax(-||key - ê||²) over the regions."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from tests.helpers.layer_testing import run_layer_test

from ctl_keras.model.attention import CategoryAttention


def test_two_regions_known_softmax():
    """Key 1 = ê (logit 0), key 2 at squared distance 2 (logit -2): a = [1, e^-2] / (1 + e^-2)."""
    e = np.array([[1.0, 0.0]], "float32")
    keys = np.array([[[1.0, 0.0], [0.0, 1.0]]], "float32")
    out = np.asarray(CategoryAttention()(keys, e))
    expected = np.array([1.0, np.exp(-2.0)]) / (1.0 + np.exp(-2.0))  # [0.8808, 0.1192]
    np.testing.assert_allclose(out, [expected], atol=1e-6)


def test_equal_keys_give_uniform_and_random_sums_to_one():
    """Four identical keys -> 1/4 each; random keys [3,7,5] -> rows sum to 1, all positive."""
    e = np.array([[0.0, 1.0]], "float32")
    same = np.tile(np.array([[[0.6, 0.8]]], "float32"), (1, 4, 1))
    np.testing.assert_allclose(np.asarray(CategoryAttention()(same, e)), [[0.25] * 4], atol=1e-6)
    rng = np.random.RandomState(0)
    out = np.asarray(CategoryAttention()(rng.normal(size=(3, 7, 5)).astype("float32"),
                                         rng.normal(size=(3, 5)).astype("float32")))
    assert out.shape == (3, 7) and (out > 0).all()
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-6)


def test_layer_contract(tmp_path):
    """Shape, config and save/reload round trips (shared helper); no weights; the name survives."""
    rng = np.random.RandomState(0)
    keys, e = rng.normal(size=(3, 7, 5)).astype("float32"), rng.normal(size=(3, 5)).astype("float32")
    run_layer_test(CategoryAttention, {"name": "att"}, (keys, e), (3, 7), tmp_path=tmp_path,
                   expected_num_trainable_weights=0)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(CategoryAttention(name="att")))
    assert revived.name == "att"
