"""Frozen-feature cache (`--feature_cache`): backbone features computed once per image and view, then
heads train from disk (`FeatureCache.build_or_load`, `FeatureCache.train_dataset`)."""

from ctl_keras.feature_cache.cache import FeatureCache
from ctl_keras.feature_cache.location import default_cache_dir

__all__ = ["FeatureCache", "default_cache_dir"]
