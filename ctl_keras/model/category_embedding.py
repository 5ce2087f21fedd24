"""Learned category embeddings ê_c, normalized to unit length (the attention's query)."""

from __future__ import annotations

import keras

from ctl_keras.model.heads import l2_normalize


@keras.saving.register_keras_serializable(package="ctl_keras")
class CategoryEmbedding(keras.layers.Layer):
    """Learned category embeddings: category ids int [B] -> ê_c [B, embedding_dim], each of unit length.

    Args:
        num_categories: int. Number of rows of the table (len(config.categories)).
        embedding_dim: int. Size d of each embedding (the attention's key size).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        category: int tensor [B] of ids in [0, num_categories). Not range-checked in the graph: callers
            validate ids against config.categories.

    Example:

    ```python
    layer = CategoryEmbedding(num_categories=5, embedding_dim=16)
    e = layer(np.array([0, 3], "int32"))  # [2, 16], unit rows
    ```
    """

    def __init__(self, num_categories: int, embedding_dim: int = 128, **kwargs):
        super().__init__(**kwargs)
        if num_categories <= 0:
            raise ValueError(f"num_categories must be positive, got {num_categories}")
        self.num_categories = num_categories
        self.embedding_dim = embedding_dim

    def build(self, input_shape):
        self.table = self.add_weight(
            name="table",
            shape=(self.num_categories, self.embedding_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
        )
        self.built = True

    def call(self, category):
        # Ids are not range-checked here (a graph op cannot raise a clear message); callers validate
        # them against config.categories.
        category = keras.ops.cast(category, "int32")
        return l2_normalize(keras.ops.take(self.table, category, axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(num_categories=self.num_categories, embedding_dim=self.embedding_dim)
        return config
