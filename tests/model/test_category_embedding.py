"""CategoryEmbedding: a learned table, rows returned at unit length."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tests.helpers.layer_testing import run_layer_test

from ctl_keras.model.category_embedding import CategoryEmbedding


def test_rows_are_normalized_table_rows():
    """Table [[3,4],[0,-2]]: ids [1,0,1] -> [[0,-1],[.6,.8],[0,-1]]."""
    layer = CategoryEmbedding(num_categories=2, embedding_dim=2)
    layer.build((None,))
    layer.set_weights([np.array([[3.0, 4.0], [0.0, -2.0]], "float32")])
    out = np.asarray(layer(np.array([1, 0, 1], "int32")))
    np.testing.assert_allclose(out, [[0.0, -1.0], [0.6, 0.8], [0.0, -1.0]], atol=1e-6)


def test_random_init_unit_length_and_layer_contract(tmp_path):
    """Seeded random table: every output row has norm 1; shape, config and save/reload round trips."""
    keras.utils.set_random_seed(0)
    out = run_layer_test(CategoryEmbedding, dict(num_categories=5, embedding_dim=16, name="ce"),
                         np.arange(5, dtype="int32"), (5, 16), tmp_path=tmp_path, expected_num_trainable_weights=1)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)
    clone = CategoryEmbedding.from_config(CategoryEmbedding(num_categories=5, embedding_dim=16, name="ce").get_config())
    assert (clone.num_categories, clone.embedding_dim, clone.name) == (5, 16, "ce")


def test_no_categories_is_refused():
    with pytest.raises(ValueError, match="num_categories"):
        CategoryEmbedding(num_categories=0)
