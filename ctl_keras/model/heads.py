"""The embedding head g of the paper: Linear -> BatchNorm -> ReLU -> Dropout -> Linear -> L2-normalize."""

from __future__ import annotations

import keras


# Guards the L2 normalization against an all-zero vector.
_EPSILON = 1e-12


def l2_normalize(x, axis: int = -1):
    """x / ||x|| along `axis` (keras.ops only, so it runs inside layers and in plain code alike)."""
    squared = keras.ops.sum(keras.ops.square(x), axis=axis, keepdims=True)
    return x * keras.ops.rsqrt(keras.ops.maximum(squared, _EPSILON))


@keras.saving.register_keras_serializable(package="ctl_keras")
class EmbeddingHead(keras.layers.Layer):
    """The embedding head g: features [..., C] -> unit-length embeddings [..., embedding_dim].

    Linear -> BatchNorm -> ReLU -> Dropout -> Linear -> L2-normalize, over the last axis. Works on pool5
    vectors [B, 2048] and on region maps [B, N, 1024] alike; BatchNorm then pools its statistics over
    every leading axis. The BatchNorm is synchronized so that a MirroredStrategy replica normalizes with
    the global batch's statistics, as a single device would.

    Scene photos and product shots have different feature statistics; with `product_norm=True` (the
    global head, which embeds scenes and products) each domain is normalised by its own BatchNorm at
    training and, through its own moving averages, at inference (measured: BUILD_NOTES, "Model fidelity").

    Args:
        embedding_dim: int. Size d of the output embedding.
        hidden_dim: int. Width of the hidden Linear layer.
        dropout: float. Dropout rate after the ReLU (training only).
        product_norm: bool. Adds a second BatchNorm for products, chosen by `call(..., product=True)`;
            the Dense weights stay shared.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...). A mixed `dtype` policy
            (e.g. "mixed_bfloat16") runs the Dense layers in that compute dtype; the output is float32.

    Call arguments:
        inputs: float tensor [..., C].
        training: bool. Batch statistics and dropout when True, moving averages when False.
        product: bool. Normalise with the product BatchNorm (needs `product_norm=True`).

    Example:

    ```python
    head = EmbeddingHead(embedding_dim=128, hidden_dim=256)
    f = head(np.random.normal(size=(4, 2048)).astype("float32"), training=False)  # [4, 128], unit rows
    ```
    """

    def __init__(self, embedding_dim: int = 128, hidden_dim: int = 256, dropout: float = 0.5,
                 product_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.product_norm = product_norm
        self.hidden = keras.layers.Dense(hidden_dim, name="hidden", dtype=self.dtype_policy)
        self.batch_norm = keras.layers.BatchNormalization(synchronized=True, name="batch_norm", dtype=self.dtype_policy)
        self.product_batch_norm = (
            keras.layers.BatchNormalization(synchronized=True, name="product_batch_norm", dtype=self.dtype_policy)
            if product_norm else None
        )
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout", dtype=self.dtype_policy)
        self.output_dense = keras.layers.Dense(embedding_dim, name="output", dtype=self.dtype_policy)

    def build(self, input_shape):
        # The sublayers see rows [M, C] (see call); their weights do not depend on the leading axes.
        hidden_shape = (None, self.hidden_dim)
        self.hidden.build((None, input_shape[-1]))
        self.batch_norm.build(hidden_shape)
        if self.product_batch_norm is not None:
            self.product_batch_norm.build(hidden_shape)
        self.dropout_layer.build(hidden_shape)
        self.output_dense.build(hidden_shape)
        self.built = True

    def call(self, inputs, training=None, product=False):
        if product and self.product_batch_norm is None:
            raise ValueError(f"{self.name} has no product normalisation (product_norm=False)")
        # Region maps [B, N, C] run as one [B·N, C] matrix: a Dense on a rank-3 input is a broadcast
        # batched matmul whose kernel gradient is B small products summed afterwards, ~2x slower than
        # one matmul (benchmarks/train_step.py). BatchNorm statistics pool the same rows either way.
        leading = keras.ops.shape(inputs)[:-1]
        x = self.hidden(keras.ops.reshape(inputs, (-1, keras.ops.shape(inputs)[-1])))
        x = (self.product_batch_norm if product else self.batch_norm)(x, training=training)
        x = keras.ops.relu(x)
        x = self.dropout_layer(x, training=training)
        # Under a mixed policy the Dense layers compute in bfloat16/float16; the unit-length
        # embeddings (and every distance and the loss computed from them) are float32.
        x = l2_normalize(keras.ops.cast(self.output_dense(x), "float32"))
        return keras.ops.reshape(x, (*leading, self.embedding_dim))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.embedding_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(embedding_dim=self.embedding_dim, hidden_dim=self.hidden_dim, dropout=self.dropout,
                      product_norm=self.product_norm)
        return config
