"""Per-dataset settings: the one place for defaults. Flags only override these.

`get_config("home")` gives the paper's setting (from the dataset's spec file, ctl_keras/spec.py);
`get_config("home", smoke=True)` a tiny one for tests. No taxonomy lives here: category names and the
crop rule come from the spec (or, once built, from the dataset's manifest / the model's config.json).
A Config round-trips through `to_dict` / `from_dict` (it is stored in manifests, checkpoints and
results.json).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ctl_keras import spec as spec_lib

VARIANTS = ("hybrid", "global", "local", "local_uniform")
# Keras dtype policies of the trained heads (`train --mixed_precision` picks mixed_float16 on a GPU,
# mixed_bfloat16 on a CPU); the frozen backbone, normalisations, distances and the loss stay float32.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# The frozen backbone's precision (model/precision.py: `auto` picks bfloat16 only on native bf16 hardware).
BACKBONE_PRECISIONS = ("float32", "bfloat16", "auto")
# Learning-rate schedules: constant (the paper) or cosine decay to 0 over config.epochs.
LR_SCHEDULES = ("constant", "cosine")

# Settings that only schedule a run: how far it goes, when it validates, how long a Top-K curve the
# evaluation draws. A resumed run may change them (training/checkpointing.py records the change); the
# other fields define the model, the data or the optimizer's path (learning rate, batch size, seed,
# shuffle buffer, cached views, precision...), which a checkpoint's continuation must share.
SCHEDULE_FIELDS = ("epochs", "eval_every", "topk_max")


def schedule_fields(config: "Config") -> tuple[str, ...]:
    """SCHEDULE_FIELDS of `config`. A cosine schedule decays the rate to 0 over config.epochs, so there
    another --epochs changes the learning rate of every step still to come: epochs must match."""
    if config.lr_schedule == "cosine":
        return tuple(f for f in SCHEDULE_FIELDS if f != "epochs")
    return SCHEDULE_FIELDS


# Names with one home (the modules that use them import them from here).
SPLITS = ("train", "val", "test")
STRATEGIES = ("auto", "mirrored", "one_device", "multi_worker")  # built by training/strategies.py

# ResNet50 feature sizes the heads read (docs/design.md §3): pool5 vector and conv4 region map.
POOL5_DIM = 2048
LOCAL_DIM = 1024

# Seed salts: keep the random streams of different purposes apart although they share
# (config.seed, epoch). data/augment.py folds SALT_* into (seed, epoch); the feature cache's view
# seeds start at SALT_CACHE_VIEWS (+ kind) so they never meet the pipeline's.
SALT_VIEWS = 1
SALT_PAIR_ORDER = 2
SALT_PRODUCT_ORDER = 3
SALT_CACHE_VIEWS = 1000
SALT_CACHE_PLAN = 7  # feature_cache/cache.py: the per-epoch row/view plan

@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str
    categories: tuple[str, ...]
    # CTL crop: which candidate regions around the expanded product box are allowed.
    crop_sides: tuple[str, ...] = ("top", "bottom")
    crop_expand: float = 0.05
    crop_min_area: float = 0.2
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    num_shards: int = 16
    # Images: train resizes to resize_size then random-crops image_size; eval center-crops.
    image_size: int = 224
    resize_size: int = 256
    local_grid: int = 7
    backbone_weights: str = "imagenet"
    # Heads g: Linear(hidden_dim) -> BN -> ReLU -> Dropout -> Linear(embedding_dim) -> L2.
    embedding_dim: int = 128
    hidden_dim: int = 256
    dropout: float = 0.5
    variant: str = "hybrid"
    margin: float = 0.2
    # Training.
    batch_size: int = 16
    epochs: int = 100
    eval_every: int = 10
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"  # one of LR_SCHEDULES
    seed: int = 0
    shuffle_buffer: int = 2048
    num_views: int = 4  # augmented views per image in the feature cache
    precision: str = "float32"  # one of PRECISIONS: the heads' compute dtype policy
    topk_max: int = 50

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset name {self.dataset!r} must be a non-empty string")
        names = tuple(self.categories)
        if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"categories {names} must be distinct non-empty names")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        for name in ("epochs", "batch_size", "eval_every", "num_views", "embedding_dim", "hidden_dim", "local_grid",
                     "image_size", "resize_size", "num_shards", "shuffle_buffer", "topk_max"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not self.margin >= 0:
            raise ValueError(f"--margin must be at least 0, got {self.margin}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.seed < 2**32:
            # NumPy's seeding refuses anything else, deep inside the builder or the loop.
            raise ValueError(f"seed {self.seed} must be in [0, 2**32)")
        fractions = tuple(self.split_fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions {fractions} must be three non-negative numbers summing to 1")
        if not self.crop_sides or not set(self.crop_sides) <= {"top", "bottom", "left", "right"}:
            raise ValueError(f"crop_sides {self.crop_sides} must be a non-empty subset of top, bottom, left, right")
        if self.image_size > self.resize_size:
            raise ValueError(f"image_size {self.image_size} is larger than resize_size {self.resize_size}")
        if self.image_size % 16 or (self.image_size // 16) % self.local_grid:
            raise ValueError(
                f"image_size {self.image_size} gives a {self.image_size // 16}x{self.image_size // 16} conv4 "
                f"map, which cannot be pooled to a {self.local_grid}x{self.local_grid} grid"
            )

    def replace(self, **overrides: Any) -> "Config":
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)


def get_config(dataset: "str | spec_lib.DatasetSpec | dict", smoke: bool = False, **overrides: Any) -> Config:
    """The default Config of a dataset (a built-in name, a spec file's path, a spec or its JSON form):
    the spec's categories, crop rule and `defaults`, then `smoke`'s tiny variant for tests and quick
    checks, then `overrides`."""
    spec = spec_lib.resolve(dataset)
    base: dict[str, Any] = {"dataset": spec.name, "categories": spec.category_names, "crop_sides": spec.sides}
    fields = {f.name for f in dataclasses.fields(Config)} - set(base)
    for key, value in spec.defaults:
        if key not in fields:
            raise ValueError(f"{spec.source}: defaults.{key}: not a setting (expected some of {', '.join(sorted(fields))})")
        base[key] = tuple(value) if isinstance(value, list) else value
    if smoke:
        base.update(image_size=64, resize_size=72, local_grid=4, embedding_dim=16, hidden_dim=32,
                    batch_size=8, epochs=2, eval_every=1, num_shards=2, num_views=2,
                    backbone_weights="none", shuffle_buffer=64, topk_max=10)
    base.update(overrides)
    try:
        return Config(**base)
    except TypeError as e:  # a misspelt override or default
        raise ValueError(f"{spec.source}: {e}") from None


def check_agreement_floor(floor: float | None) -> None:
    """--min_backbone_agreement is a floor on a cosine: None, or a number in [-1, 1] (2 refused every export,
    NaN none)."""
    if floor is not None and not -1.0 <= floor <= 1.0:
        raise ValueError(f"--min_backbone_agreement must be a cosine in [-1, 1], got {floor}")


def check_backbone_weights(weights: str | None) -> None:
    if weights is None or weights in ("imagenet", "none"):
        return
    if not os.path.isfile(weights):
        raise ValueError(f"--backbone_weights={weights}: no such file; pass imagenet, none or the path of a "
                         "ResNet50 (include_top=False) .h5 file")
    if not weights.endswith((".h5", ".hdf5")):
        raise ValueError(f"--backbone_weights={weights} is not an .h5 file")
