"""The frozen-feature fast path (`--feature_cache`); the implementation lives in `ctl_keras.feature_cache`.

ResNet50 is frozen, so its features depend only on the image and the augmented view: compute them once
(`FeatureCache.build_or_load`) and train the heads from `FeatureCache.train_dataset`.
"""

from ctl_keras.feature_cache import TRAIN_KEYS, FeatureCache

__all__ = ["FeatureCache", "TRAIN_KEYS"]
