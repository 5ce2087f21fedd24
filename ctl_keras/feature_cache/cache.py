"""Read side of the feature cache: memmapped accessors and the per-epoch training dataset.

Nothing is loaded into RAM wholesale: arrays are opened with `mmap_mode="r"` and each batch gathers
only its rows (the OS page cache does the rest), so a cache larger than memory still trains.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from ctl_keras.config import LOCAL_DIM, POOL5_DIM, SALT_CACHE_PLAN, SPLITS
from ctl_keras.data.negatives import NegativeSampler
from ctl_keras.feature_cache import build as _build

class FeatureCache:
    """A built cache directory (see `ctl_keras.feature_cache.build` for the layout)."""

    def __init__(self, cache_dir):
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        path = os.path.join(self.cache_dir, "manifest.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.cache_dir} is not a feature cache (no manifest.json); "
                                    "build it with FeatureCache.build_or_load or train --feature_cache")
        with open(path) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != _build.FORMAT:
            raise ValueError(f"{path}: format {self.manifest.get('format')!r}, expected {_build.FORMAT!r}")
        self.identity = self.manifest["identity"]
        # True: the TRAIN scenes are uncropped. Val/test scenes are the cropped ones in every cache.
        self.full_scene = bool(self.identity["full_scene"])
        self.num_views = int(self.identity["num_views"])
        self._splits: dict[str, dict] = {}

    # ------------------------------------------------------------ construction
    @classmethod
    def build_or_load(cls, config, data_dir, cache_dir, backbone, full_scene: bool = False,
                      jit_compile: bool = False, backbone_precision: str = "float32",
                      min_agreement: float | None = None) -> "FeatureCache":
        """Load the cache at `cache_dir` if it matches (data manifest, view/backbone config), else rebuild it.

        `full_scene=True` caches uncropped TRAIN scenes; val/test scenes are cropped in every cache.
        `backbone_precision` (resolved) and `min_agreement`: build.build.

        A non-empty directory that is not a feature cache is never overwritten: that is a ValueError.
        """
        cache_dir = os.path.abspath(os.fspath(cache_dir))
        want = _build.identity(config, data_dir, full_scene, backbone_precision)
        manifest = os.path.join(cache_dir, "manifest.json")
        if os.path.exists(manifest):
            cache = cls(cache_dir)
            if cache.identity == want:
                logging.info("feature cache: using %s", cache_dir)
                return cache
            changed = sorted(k for k in set(want) | set(cache.identity) if want.get(k) != cache.identity.get(k))
            logging.warning("feature cache at %s was built for other %s; rebuilding", cache_dir, ", ".join(changed))
        elif os.path.isdir(cache_dir) and os.listdir(cache_dir):
            raise ValueError(f"feature cache dir {cache_dir} exists, is not empty and has no manifest.json; "
                             "refusing to overwrite it: pass another directory (--feature_cache_dir; "
                             "experiments: --feature_cache_root)")
        _build.build(config, data_dir, cache_dir, backbone, full_scene, jit_compile=jit_compile,
                     backbone_precision=backbone_precision, min_agreement=min_agreement)
        return cls(cache_dir)

    # ------------------------------------------------------------ accessors
    def split(self, split: str) -> dict:
        """Memmapped arrays + index of one split (opened lazily, kept open)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if split not in self._splits:
            d = os.path.join(self.cache_dir, split)
            arrays = {name: np.load(os.path.join(d, f"{name}.npy"), mmap_mode="r")
                      for name in ("scene_pool5", "scene_local", "product_pool5")}
            with np.load(os.path.join(d, "index.npz")) as index:
                arrays.update({k: index[k] for k in index.files})
            with open(os.path.join(d, "ids.json")) as f:
                arrays.update({k: np.array(v, dtype=object) for k, v in json.load(f).items()})
            self._splits[split] = arrays
        return self._splits[split]

    def _center(self, split: str) -> dict:
        if split == "train":
            raise ValueError("the feature cache holds only augmented views of the train split; "
                             "embed train images with the image path (features=None)")
        return self.split(split)

    def scenes(self, split: str) -> dict:
        """Center-view CROPPED scene features of val/test (whatever the train scenes are), one row per pair
        in file order (arrays are float16)."""
        s = self._center(split)
        return {"pool5": s["scene_pool5"][:, 0], "local": s["scene_local"][:, 0], "category": s["scene_category"],
                "pair_ids": s["pair_ids"], "scene_ids": s["scene_ids"], "positive_ids": s["positive_ids"]}

    def products(self, split: str) -> dict:
        """Center-view product pool5 of val/test, one row per product of the split."""
        s = self._center(split)
        return {"pool5": s["product_pool5"][:, 0], "category": s["product_category"], "ids": s["product_ids"]}

    # ------------------------------------------------------------ training
    def epoch_plan(self, seed: int, epoch_index: int) -> dict:
        """Row/view choices of one epoch, deterministic per (seed, epoch_index); epoch_index is 0-based
        (training.loop passes epoch - 1: logs count epochs from 1).

        Pairs are shuffled; each image gets a uniformly random cached view; the negative is a uniformly
        random train product of the positive's category that is not a product of the pair's scene
        (`ctl_keras.data.negatives`, the rule of the image pipeline and the baselines). Pairs without
        such a product are skipped and counted (`skipped_pairs`).
        """
        s = self.split("train")
        sampler = self._negative_sampler()
        rng = np.random.default_rng([int(seed), int(epoch_index), SALT_CACHE_PLAN])
        if sampler.skipped == len(sampler):
            raise ValueError(f"no train pair of {self.cache_dir} has a valid negative (a product of its "
                             "category outside its scene): categories need two or more products")
        if sampler.skipped and not getattr(self, "_warned", False):
            logging.warning("feature cache: %d train pairs skipped: no product of their category outside "
                            "their scene, so no negative can be drawn", sampler.skipped)
            self._warned = True
        order = rng.permutation(len(sampler))
        negatives = sampler.sample(rng)
        order = order[negatives[order] >= 0]
        n = len(order)
        views = rng.integers(self.num_views, size=(3, n))
        return {"scene_row": order, "positive_row": s["positive_row"][order], "negative_row": negatives[order],
                "category": s["scene_category"][order], "scene_view": views[0], "positive_view": views[1],
                "negative_view": views[2], "skipped_pairs": sampler.skipped}

    def _negative_sampler(self) -> NegativeSampler:
        if getattr(self, "_sampler", None) is None:
            s = self.split("train")
            self._sampler = NegativeSampler(s["scene_ids"], s["positive_row"], s["product_category"])
        return self._sampler

    def train_dataset(self, config, epoch_index: int, batch_size: int, group: int = 0) -> tf.data.Dataset:
        """One epoch of feature triplets as dict batches (float32 features, int32 category).

        Batch i is gathered from the memmaps by a `tf.numpy_function` over `Dataset.range(batches)`, in
        the stored dtype (float16); tf.data casts to float32 (exact). Measured against the former
        `from_generator` input (benchmarks/cache_input.py, benchmarks/input_source.py):
        float32 rows through from_generator took twice the input time per batch, and a process that
        had iterated any from_generator dataset ran the train step ~1.7x slower afterwards on this CPU.

        `group` N > 0: full batches only, N at a time stacked on a new leading axis ([k, batch_size, ...],
        k ≤ N in the last group), gathered as one block of rows. This is what a train step that runs N
        steps in one XLA launch reads (training.step.stack_batches); stacking single batches with
        tf.data's `batch` instead costs ~0.5 ms per batch here.
        """
        if config.num_views != self.num_views:
            raise ValueError(f"config.num_views={config.num_views} but the cache holds {self.num_views} views")
        if group < 0:
            raise ValueError(f"group must be >= 0, got {group}")
        s = self.split("train")
        plan = self.epoch_plan(config.seed, epoch_index)
        n, g = len(plan["scene_row"]), s["scene_local"].shape[2]
        # name -> (memmap, row key, view key, per-row shape)
        sources = {"scene_pool5": (s["scene_pool5"], "scene_row", "scene_view", [POOL5_DIM]),
                   "scene_local": (s["scene_local"], "scene_row", "scene_view", [g, g, LOCAL_DIM]),
                   "positive_pool5": (s["product_pool5"], "positive_row", "positive_view", [POOL5_DIM]),
                   "negative_pool5": (s["product_pool5"], "negative_row", "negative_view", [POOL5_DIM])}
        # Rows per element and the rows of the epoch it draws from (grouped: full batches only).
        per, usable = (group * batch_size, n // batch_size * batch_size) if group else (batch_size, n)
        lead = [None, batch_size] if group else [None]

        def gather(i):
            b = slice(int(i) * per, min((int(i) + 1) * per, usable))
            rows = [_gather(mm, plan[row][b], plan[view][b]) for mm, row, view, _ in sources.values()]
            values = [*rows, plan["category"][b].astype(np.int32)]
            return [v.reshape(-1, batch_size, *v.shape[1:]) for v in values] if group else values

        dtypes = [tf.as_dtype(mm.dtype) for mm, *_ in sources.values()] + [tf.int32]

        def load(i):
            values = tf.numpy_function(gather, [i], dtypes)
            batch = {}
            for (name, (*_, shape)), value in zip(sources.items(), values):
                value.set_shape([*lead, *shape])
                batch[name] = tf.cast(value, tf.float32)
            values[-1].set_shape(lead)
            batch["category"] = values[-1]
            return batch

        return tf.data.Dataset.range(-(-usable // per)).map(load).prefetch(2)


def _gather(mm: np.ndarray, rows: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Rows of a [N, V, ...] memmap, one chosen view each, in the stored dtype; reads rows in file order."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *mm.shape[2:]), mm.dtype)
    out[order] = mm[rows[order], views[order]]
    return out
