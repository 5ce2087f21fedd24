"""Scene-product distances of docs/design.md §3, as pure functions and as a layer choosing the variant.

All embeddings have unit length, so each distance lies in [0, 4] and equals 2 - q·f_p for the
variant's query q (see ctl.py): that identity is what makes retrieval an inner-product search.
"""

from __future__ import annotations

import keras
import numpy as np

from ctl_keras.config import VARIANTS

D_STAR_OFFSET = 2.0  # d*(s, p) = 2 - q·f_p for unit embeddings (the identity of ctl.py)


def d_star_from_scores(scores):
    """d* from inner products q·f_p already computed (a search's scores): 2 - scores, any array type
    (numpy, tf or keras tensors), so a search backend and the serving graph use the same formula."""
    return D_STAR_OFFSET - scores


def d_star(query, products, *, paired: bool = False) -> np.ndarray:
    """d* = 2 - q·f_p in float64, the one implementation of the scoring identity (numpy).

    query [d] or [N, d], products [M, d] -> [M] or [N, M] (every query against every product); with
    `paired=True`, query and products are both [N, d] and row i is scored against row i -> [N].
    """
    q = np.asarray(query, np.float64)
    f = np.asarray(products, np.float64)
    scores = np.sum(q * f, axis=-1) if paired else q @ f.T
    return d_star_from_scores(scores)


def global_distance(f_s, f_p):
    """d_global = ||f_s - f_p||²: [B, d], [B, d] -> [B]."""
    return keras.ops.sum(keras.ops.square(f_s - f_p), axis=-1)


def local_distance(f_local, attention, f_p):
    """d_local = Σ_i a_i ||f_i - f_p||²: f_local [B, N, d], attention [B, N], f_p [B, d] -> [B]."""
    per_region = keras.ops.sum(keras.ops.square(f_local - keras.ops.expand_dims(f_p, axis=1)), axis=-1)
    return keras.ops.sum(attention * per_region, axis=-1)


def hybrid_distance(f_s, f_local, attention, f_p):
    """d* = ½ (d_global + d_local) -> [B]."""
    return 0.5 * (global_distance(f_s, f_p) + local_distance(f_local, attention, f_p))


def uniform_attention(f_local):
    """a_i = 1/N for every region (the `local_uniform` ablation): [B, N, d] -> [B, N]."""
    ones = keras.ops.ones_like(f_local[..., 0])
    return ones / keras.ops.cast(keras.ops.shape(f_local)[1], ones.dtype)


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return variant


@keras.saving.register_keras_serializable(package="ctl_keras")
class PairDistance(keras.layers.Layer):
    """The variant's scene-product distance d(s, p) -> [B] (docs/design.md §3).

    Args:
        variant: str, one of config.VARIANTS: "hybrid" (½ (d_global + d_local)), "global", "local", or
            "local_uniform" (local with equal region weights).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...). The layer has no weights.

    Call arguments:
        inputs: dict with "scene_embedding" f_s [B, d] and "product_embedding" f_p [B, d], plus
            "local_embeddings" f_i [B, N, d] and "attention" a [B, N] for the variants that use them
            (`local_uniform` ignores "attention"; `global` needs neither).

    Example:

    ```python
    d = PairDistance("global")({"scene_embedding": f_s, "product_embedding": f_p})  # [B]
    ```
    """

    def __init__(self, variant: str = "hybrid", **kwargs):
        super().__init__(**kwargs)
        self.variant = check_variant(variant)

    def call(self, inputs):
        f_p = inputs["product_embedding"]
        if self.variant == "global":
            return global_distance(inputs["scene_embedding"], f_p)
        f_local = inputs["local_embeddings"]
        if self.variant == "local_uniform":
            return local_distance(f_local, uniform_attention(f_local), f_p)
        if self.variant == "local":
            return local_distance(f_local, inputs["attention"], f_p)
        return hybrid_distance(inputs["scene_embedding"], f_local, inputs["attention"], f_p)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape["product_embedding"][:-1])

    def get_config(self):
        config = super().get_config()
        config.update(variant=self.variant)
        return config
