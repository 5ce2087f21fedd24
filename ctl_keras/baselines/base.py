"""The baselines' shared pieces: one split of cached features, the negative sampler, the base class.

`Baseline` is the interface every method of ctl_keras.baselines implements (`fit`, `encode_scenes`,
`encode_products`, `distances`; scoring is shared); trained ones derive from `baselines.trained`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ctl_keras.data.negatives import NegativeSampler


@dataclasses.dataclass
class SplitFeatures:
    """One split of the feature cache: pairs (scene rows) and the split's products.

    Arrays may be float16 memmaps; train splits have V > 1 augmented views per image.
    """

    split: str
    pair_ids: np.ndarray  # [N] int64
    scene_ids: list
    pair_categories: np.ndarray  # [N] int32
    positive_ids: list
    positive_rows: np.ndarray  # [N] row of each pair's positive in the product arrays
    scene_pool5: np.ndarray  # [N, V, 2048]
    scene_local: Any  # [N, V, g, g, 1024] or None
    product_ids: list
    product_categories: np.ndarray  # [M] int32
    product_pool5: np.ndarray  # [M, V, 2048]
    # Where the images are, for baselines that need more than the cached features (siamese).
    data_dir: str | None = None
    full_scene: bool = False  # uncropped scenes: only ever True for a train split

    def __len__(self) -> int:
        return len(self.pair_ids)


def sample_negatives(split: SplitFeatures, rng: np.random.Generator) -> np.ndarray:
    """For each pair, a product row of the positive's category outside the pair's scene (paper §4.4,
    `ctl_keras.data.negatives`, the rule our model trains with); -1 where none exists: skip that pair."""
    sampler = NegativeSampler(split.scene_ids, split.positive_rows, split.product_categories)
    return sampler.sample(rng)


def pick_views(array: np.ndarray, rows: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """array[rows, v] as float32 with v random per row (train augmentation) or 0 when rng is None."""
    views = array.shape[1]
    v = np.zeros(len(rows), np.int64) if rng is None or views == 1 else rng.integers(views, size=len(rows))
    return np.asarray(array[rows, v], np.float32)


def view0(array: np.ndarray) -> np.ndarray:
    """The first (for val/test: the only, center) view of every row, as float32."""
    return np.asarray(array[:, 0], np.float32)


class Baseline:
    """Base class: subclasses set `name`, implement `encode_*` and `distances`, and maybe `fit`."""

    name = "baseline"

    def __init__(self, config, seed: int | None = None, epochs: int | None = None, batch_size: int | None = None):
        """`epochs`, `batch_size`: the trained baselines' (default: the config's, as for our model)."""
        self.config = config
        self.seed = config.seed if seed is None else seed
        self.epochs = epochs
        self.batch_size = config.batch_size if batch_size is None else batch_size

    def fit(self, train: SplitFeatures, val: SplitFeatures | None = None) -> dict:
        return {}

    def encode_scenes(self, split: SplitFeatures) -> np.ndarray:
        raise NotImplementedError

    def encode_products(self, split: SplitFeatures) -> np.ndarray:
        raise NotImplementedError

    def distances(self, scene_reps: np.ndarray, product_reps: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_table(self, split: SplitFeatures):
        from ctl_keras.evaluation.scoring import ScoreTable

        return ScoreTable(split.pair_ids, split.pair_categories, split.positive_ids, self.encode_scenes(split),
                          split.product_ids, split.product_categories, self.encode_products(split),
                          scene_ids=split.scene_ids)

    def score(self, split: SplitFeatures, questions: list[dict], k_max: int | None = None) -> dict:
        """AUC on the questions and Top-1..k_max over each category's products (evaluation.scoring)."""
        from ctl_keras.evaluation.scoring import score_split

        k_max = self.config.topk_max if k_max is None else k_max
        return score_split(self.score_table(split), self.distances, questions, self.config.categories, k_max)


def split_features(cache, split: str, data_dir: str | None = None) -> SplitFeatures:
    """A SplitFeatures view (memmapped, nothing copied) of one split of a built FeatureCache."""
    s = cache.split(split)
    if len(s["pair_ids"]) == 0:
        raise ValueError(f"the {split} split of feature cache {cache.cache_dir} has no pairs")
    return SplitFeatures(
        split=split, pair_ids=np.asarray(s["pair_ids"], np.int64), scene_ids=[str(x) for x in s["scene_ids"]],
        pair_categories=np.asarray(s["scene_category"], np.int32), positive_ids=[str(x) for x in s["positive_ids"]],
        positive_rows=np.asarray(s["positive_row"], np.int64), scene_pool5=s["scene_pool5"],
        scene_local=s["scene_local"], product_ids=[str(x) for x in s["product_ids"]],
        product_categories=np.asarray(s["product_category"], np.int32), product_pool5=s["product_pool5"],
        data_dir=data_dir, full_scene=cache.full_scene and split == "train")
