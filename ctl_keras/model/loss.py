"""Triplet hinge loss of the paper: [d(s,p+) - d(s,p-) + α]₊ with α = 0.2.

Per example: training.loop's task returns it and training.step takes the global-batch mean (the
paper's sum differs only by the constant batch size, which Adam is invariant to up to epsilon).
"""

from __future__ import annotations

from typing import Any

import keras

DEFAULT_MARGIN = 0.2


def triplet_hinge(d_pos: Any, d_neg: Any, margin: float = DEFAULT_MARGIN) -> Any:
    """Per-example hinge [d_pos - d_neg + margin]₊: tensors [B], [B] -> [B]."""
    return keras.ops.relu(d_pos - d_neg + margin)
