"""Triplet hinge loss of the paper: [d(s,p+) - d(s,p-) + α]₊ with α = 0.2."""

from __future__ import annotations

from typing import Any

import keras

DEFAULT_MARGIN = 0.2


def triplet_hinge(d_pos: Any, d_neg: Any, margin: float = DEFAULT_MARGIN) -> Any:
    """Per-example hinge [d_pos - d_neg + margin]₊: tensors [B], [B] -> [B]."""
    return keras.ops.relu(d_pos - d_neg + margin)


@keras.saving.register_keras_serializable(package="ctl_keras")
class TripletHingeLoss(keras.losses.Loss):
    """Keras Loss wrapper: y_pred = stack([d_pos, d_neg], axis=-1) [B, 2]; y_true is ignored.

    Reduction follows keras.losses.Loss (default: mean over the batch; the paper's sum differs only
    by the constant batch size, which Adam is invariant to up to epsilon).
    """

    def __init__(self, margin: float = DEFAULT_MARGIN, name: str = "triplet_hinge", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return triplet_hinge(y_pred[..., 0], y_pred[..., 1], self.margin)

    def get_config(self):
        config = super().get_config()
        config.update(margin=self.margin)
        return config
