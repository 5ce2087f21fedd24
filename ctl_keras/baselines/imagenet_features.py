"""ImageNet features: squared L2 between the raw frozen pool5 of the scene and of the product.

No training: it measures visual similarity, not compatibility, so the paper finds it near chance.
With --backbone_weights=none (the synthetic demo) the "ImageNet" features are those of the same
random frozen ResNet50 every other method uses.
"""

from __future__ import annotations

import numpy as np

from ctl_keras.baselines.base import Baseline, SplitFeatures, view0
from ctl_keras.evaluation.scoring import squared_l2_distance


class ImageNetFeatures(Baseline):
    name = "imagenet"

    def encode_scenes(self, split: SplitFeatures) -> np.ndarray:
        return view0(split.scene_pool5)

    def encode_products(self, split: SplitFeatures) -> np.ndarray:
        return view0(split.product_pool5)

    def distances(self, scene_reps: np.ndarray, product_reps: np.ndarray) -> np.ndarray:
        return squared_l2_distance(scene_reps, product_reps)
