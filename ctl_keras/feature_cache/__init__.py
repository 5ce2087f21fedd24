"""Frozen-feature cache: backbone features computed once per image and view, then heads train from disk."""

from ctl_keras.feature_cache.cache import TRAIN_KEYS, FeatureCache

__all__ = ["FeatureCache", "TRAIN_KEYS"]
