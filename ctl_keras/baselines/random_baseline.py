"""Random: every (scene, product) distance is an independent uniform draw (seeded). Expected AUC 0.5."""

from __future__ import annotations

import numpy as np

from ctl_keras.baselines.base import Baseline, SplitFeatures


class RandomBaseline(Baseline):
    name = "random"

    def fit(self, train: SplitFeatures, val: SplitFeatures | None = None) -> dict:
        self._rng = np.random.default_rng(self.seed)
        return {}

    def encode_scenes(self, split: SplitFeatures) -> np.ndarray:
        return np.zeros((len(split), 1), np.float32)

    def encode_products(self, split: SplitFeatures) -> np.ndarray:
        return np.zeros((len(split.product_ids), 1), np.float32)

    def distances(self, scene_reps: np.ndarray, product_reps: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_rng"):
            self._rng = np.random.default_rng(self.seed)
        return self._rng.random((len(scene_reps), len(product_reps)))
