"""EmbeddingHead g on tiny inputs with hand-set weights."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tests.helpers.layer_testing import run_layer_test

from ctl_keras.model.heads import EmbeddingHead, l2_normalize


def _identity_head(dim=4):
    head = EmbeddingHead(embedding_dim=dim, hidden_dim=dim, dropout=0.5)
    head.build((None, dim))
    eye, zero = np.eye(dim, dtype="float32"), np.zeros(dim, "float32")
    head.hidden.set_weights([eye, zero])
    head.output_dense.set_weights([eye, zero])
    return head


def test_identity_weights_give_normalized_relu():
    """Identity Linears, fresh BN (x/sqrt(1+1e-3)): [3,-4,0,4] -> relu [3,0,0,4] -> /5 = [.6,0,0,.8]."""
    out = np.asarray(_identity_head()(np.array([[3.0, -4.0, 0.0, 4.0]], "float32"), training=False))
    np.testing.assert_allclose(out, [[0.6, 0.0, 0.0, 0.8]], atol=1e-6)


def test_unit_length_on_vectors_and_region_maps_and_same_per_region():
    """[B,C] and [B,N,C] both give unit rows; a region map equals a same-weights head on its rows."""
    keras.utils.set_random_seed(0)
    head = EmbeddingHead(embedding_dim=8, hidden_dim=16, dropout=0.5)
    regions = np.random.RandomState(0).normal(size=(2, 5, 12)).astype("float32")
    out_map = np.asarray(head(regions, training=False))
    # BatchNorm fixes its input rank at build, so the per-row check uses a clone with the same weights.
    rows_head = EmbeddingHead.from_config(head.get_config())
    rows_head.build((None, 12))
    rows_head.set_weights(head.get_weights())
    out_rows = np.asarray(rows_head(regions.reshape(10, 12), training=False))
    assert out_map.shape == (2, 5, 8)
    np.testing.assert_allclose(np.linalg.norm(out_map, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out_map.reshape(10, 8), out_rows, atol=1e-6)
    # Training mode (batch statistics, dropout) still ends in unit vectors.
    np.testing.assert_allclose(np.linalg.norm(head(regions, training=True), axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("product_norm", [False, True])
def test_layer_contract_and_synchronized_batch_norm(tmp_path, product_norm):
    """Shape, config and save/reload round trips (shared helper); the BatchNorm is synchronized."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(6, 12)).astype("float32")
    kwargs = dict(embedding_dim=8, hidden_dim=16, dropout=0.25, product_norm=product_norm, name="g")
    out = run_layer_test(EmbeddingHead, kwargs, x, (6, 8), tmp_path=tmp_path,
                         call_kwargs={"training": False, "product": product_norm},
                         expected_num_trainable_weights=6 + 2 * product_norm)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)
    assert EmbeddingHead(**kwargs).batch_norm.synchronized


def test_product_norm_is_a_second_batchnorm_over_shared_dense_weights():
    """product=True normalises with its own BatchNorm: at initialisation (both identity) the outputs
    agree; after one training call on products only, the product moving mean moved and the scene one
    did not. The option round-trips; product=True on a head without it is a clear error."""
    head = EmbeddingHead(embedding_dim=8, hidden_dim=16, dropout=0.0, product_norm=True, name="g")
    x = np.random.default_rng(0).normal(size=(6, 12)).astype("float32")
    np.testing.assert_allclose(np.asarray(head(x)), np.asarray(head(x, product=True)), atol=1e-6)
    head(x, training=True, product=True)
    assert np.abs(np.asarray(head.product_batch_norm.moving_mean)).max() > 0
    assert np.abs(np.asarray(head.batch_norm.moving_mean)).max() == 0
    assert EmbeddingHead.from_config(head.get_config()).product_norm
    with pytest.raises(ValueError, match="no product normalisation"):
        EmbeddingHead(embedding_dim=8, hidden_dim=16, name="plain")(x, product=True)


def test_l2_normalize_guards_zero():
    """[3,4] -> [.6,.8]; an all-zero row stays zero instead of NaN."""
    out = np.asarray(l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], "float32")))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-6)
