"""Category-guided attention over scene regions: a = softmax(-||f̂_i - ê_c||²) over the regions."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ctl_keras")
class CategoryAttention(keras.layers.Layer):
    """(keys f̂ [B, N, d], ê [B, d]) -> attention weights a [B, N], summing to 1 over N."""

    def call(self, keys, category_embedding):
        diff = keys - keras.ops.expand_dims(category_embedding, axis=1)
        logits = -keras.ops.sum(keras.ops.square(diff), axis=-1)
        return keras.ops.softmax(logits, axis=-1)

    def compute_output_shape(self, keys_shape, category_embedding_shape):
        return tuple(keys_shape[:-1])
