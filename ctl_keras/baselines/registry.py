"""Baselines by name: `create(name, config, **kwargs)`; unknown names get a one-line error."""

from __future__ import annotations

import importlib

# name -> (module, class). Imported lazily so `--help` and the cheap baselines never load TF models.
BASELINES = {
    "random": ("ctl_keras.baselines.random_baseline", "RandomBaseline"),
    "popularity": ("ctl_keras.baselines.popularity", "Popularity"),
    "imagenet": ("ctl_keras.baselines.imagenet_features", "ImageNetFeatures"),
    "ibr": ("ctl_keras.baselines.ibr", "IBR"),
    "siamese": ("ctl_keras.baselines.siamese", "Siamese"),
    "bpr_dae": ("ctl_keras.baselines.bpr_dae", "BPRDAE"),
}
# Display names for tables (paper §5.1 wording).
TITLES = {"random": "Random", "popularity": "Popularity", "imagenet": "ImageNet Features", "ibr": "IBR",
          "siamese": "Siamese Nets", "bpr_dae": "BPR-DAE"}


def check_name(name: str) -> str:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(BASELINES)}")
    return name


def create(name: str, config, **kwargs):
    module, cls = BASELINES[check_name(name)]
    return getattr(importlib.import_module(module), cls)(config, **kwargs)
