"""Where a feature cache lives by default: one directory per (image size, views, backbone, scene mode)."""

from __future__ import annotations

import os


def default_cache_dir(config, data_dir: str, full_scene: bool = False, backbone_precision: str = "float32") -> str:
    """<data_dir>/feature_cache/<size>px_<views>views_<weights>[_full][_bf16]; suffix "_full": the cache's train
    scenes are uncropped (its val/test scenes are cropped, as always); "_bf16": a bfloat16 backbone made it. train, evaluate and experiments
    all use this, so a model is scored from the cache it was trained on."""
    weights = config.backbone_weights if config.backbone_weights in ("imagenet", "none") else "file"
    name = f"{config.image_size}px_{config.num_views}views_{weights}" + ("_full" if full_scene else "") \
        + ("_bf16" if backbone_precision == "bfloat16" else "")
    return os.path.join(data_dir, "feature_cache", name)
