"""Category-guided attention over scene regions: a = softmax(-||f̂_i - ê_c||²) over the regions."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ctl_keras")
class CategoryAttention(keras.layers.Layer):
    """Category-guided attention over scene regions: a = softmax(-||f̂_i - ê_c||²) over N -> [B, N].

    Args:
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...). The layer has no weights.

    Call arguments:
        keys: float tensor [B, N, d], the region keys f̂_i.
        category_embedding: float tensor [B, d], the category embedding ê_c.

    Example:

    ```python
    a = CategoryAttention()(np.random.normal(size=(2, 49, 16)).astype("float32"),
                            np.random.normal(size=(2, 16)).astype("float32"))  # [2, 49], rows sum to 1
    ```
    """

    def call(self, keys, category_embedding):
        diff = keys - keras.ops.expand_dims(category_embedding, axis=1)
        logits = -keras.ops.sum(keras.ops.square(diff), axis=-1)
        return keras.ops.softmax(logits, axis=-1)

    def compute_output_shape(self, keys_shape, category_embedding_shape):
        return tuple(keys_shape[:-1])
