"""The one rule for training negatives, shared by the image pipeline, the feature cache and the baselines.

A valid negative for a train pair (scene s, positive p, category c) is a train product of category c
that is NOT a product of scene s: every product of the scene is a positive of it (two pillows in one
room), so drawing the other one would teach the model that a true match is wrong. Val/test questions
follow the same rule (data/plan.make_questions).

When no valid negative exists (the category has only the scene's own products, e.g. one product) the
pair is skipped for training and counted; a sampler never returns the positive itself.

- `NegativeSampler` (numpy): uniform draw among the valid negatives, per epoch; -1 marks a skipped pair.
  Used by the feature cache (`feature_cache/cache.py`) and the baselines (`baselines.sample_negatives`).
- The image pipeline streams product records instead of indexing them (memory does not grow with the
  catalog), so it draws `candidates_per_draw(...)` distinct same-category candidates and keeps the first
  that `pair_key` does not find among the scene's pairs; that many candidates always include a valid
  negative when one exists, so the same pairs are skipped.
"""

from __future__ import annotations

import numpy as np

# Joins scene and product ids into one lookup key; ids never contain this control character.
KEY_SEPARATOR = "\x1f"


def pair_key(scene_id, product_id) -> str:
    """The (scene, product) membership key of the image pipeline's exclusion table."""
    return f"{_text(scene_id)}{KEY_SEPARATOR}{_text(product_id)}"


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _scene_category_groups(pair_scenes, pair_categories) -> dict:
    """(scene, category) -> indices of the pairs holding it."""
    groups: dict = {}
    for i, key in enumerate(zip((_text(s) for s in pair_scenes), np.asarray(pair_categories).tolist())):
        groups.setdefault(key, []).append(i)
    return groups


def candidates_per_draw(pair_scenes, pair_categories) -> int:
    """1 + the most products one scene has in one category: a draw of that many distinct candidates of
    the category holds a product outside the scene whenever the category has one."""
    groups = _scene_category_groups(pair_scenes, pair_categories)
    return 1 + max((len(g) for g in groups.values()), default=1)


def count_without_negative(pair_scenes, pair_products, pair_categories, category_sizes: dict) -> int:
    """Pairs with no valid negative: their category has no product outside their scene.

    `category_sizes`: category -> number of train products (the image pipeline's product files)."""
    groups = _scene_category_groups(pair_scenes, pair_categories)
    return sum(len(g) for (_, c), g in groups.items()
               if category_sizes.get(c, 0) - len({_text(pair_products[i]) for i in g}) <= 0)


class NegativeSampler:
    """Uniform valid negatives for train pairs, as product rows.

    Args:
        pair_scenes: [N] scene id of each pair.
        positive_rows: [N] row of each pair's positive in the product arrays.
        product_categories: [M] category of each product row; a pair's category is its positive's.
    """

    def __init__(self, pair_scenes, positive_rows, product_categories):
        positive_rows = np.asarray(positive_rows, np.int64)
        product_categories = np.asarray(product_categories, np.int64)
        if len(pair_scenes) != len(positive_rows):
            raise ValueError(f"{len(pair_scenes)} scene ids for {len(positive_rows)} pairs")
        cat = product_categories[positive_rows]
        # Products sorted by (category, row): category c occupies members[start[c]:start[c] + count[c]].
        self.members = np.argsort(product_categories, kind="stable")
        count = np.bincount(product_categories, minlength=int(cat.max(initial=0)) + 1)
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        position = np.empty(len(product_categories), np.int64)
        position[self.members] = np.arange(len(product_categories)) - start[product_categories[self.members]]
        # Positions (within the category) of the scene's products, sorted, padded with the category size.
        groups = _scene_category_groups(pair_scenes, cat)
        width = max((len(set(positive_rows[g].tolist())) for g in groups.values()), default=1)
        self.excluded = np.repeat(count[cat][:, None], width, axis=1)
        for g in groups.values():
            slots = np.unique(position[np.unique(positive_rows[g])])
            self.excluded[g, :len(slots)] = slots
        self.start = start[cat]
        self.available = count[cat] - (self.excluded < count[cat][:, None]).sum(1)
        self.skipped = int((self.available <= 0).sum())

    def __len__(self) -> int:
        return len(self.start)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """[N] product rows: a uniform valid negative per pair, -1 where none exists (always the same pairs)."""
        u = rng.random(len(self))
        k = np.floor(u * np.maximum(self.available, 0)).astype(np.int64)
        # The k-th non-excluded position: step over each excluded slot at or before it (slots ascend).
        for j in range(self.excluded.shape[1]):
            k += self.excluded[:, j] <= k
        return np.where(self.available > 0, self.members[np.minimum(self.start + k, len(self.members) - 1)], -1)
