"""Popularity: rank products by how many train pairs they occur in; the scene is ignored.

Products never seen in train get count 0 and tie with each other (ties are scored pessimistically
for Top-K and as 1/2 for AUC), which is why popularity is weak on a test split of mostly new products.
"""

from __future__ import annotations

import collections

import numpy as np

from ctl_keras.baselines.base import Baseline, SplitFeatures


class Popularity(Baseline):
    name = "popularity"

    def fit(self, train: SplitFeatures, val: SplitFeatures | None = None) -> dict:
        self.counts = collections.Counter(str(p) for p in train.positive_ids)
        return {"products_seen": len(self.counts)}

    def encode_scenes(self, split: SplitFeatures) -> np.ndarray:
        return np.zeros((len(split), 1), np.float32)

    def encode_products(self, split: SplitFeatures) -> np.ndarray:
        if not hasattr(self, "counts"):
            raise ValueError("popularity: call fit(train) before scoring")
        return np.array([[self.counts.get(str(p), 0)] for p in split.product_ids], np.float64)

    def distances(self, scene_reps: np.ndarray, product_reps: np.ndarray) -> np.ndarray:
        return np.broadcast_to(-product_reps[:, 0][None, :], (len(scene_reps), len(product_reps))).copy()
