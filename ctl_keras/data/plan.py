"""Planning a build, before any output: dedupe, label, crop, check images, split, questions.

Pure Python (no TensorFlow); `build_dataset` runs it, then writes what it planned.
"""

from __future__ import annotations

import collections

import numpy as np

from ctl_keras.data import crop
from ctl_keras.data.stl import RawPair
from ctl_keras.spec import DROP


def assign_categories(pairs, labeler) -> tuple[list[tuple[RawPair, str]], collections.Counter]:
    """Map source labels to category names with the spec's LabelMatcher (ctl_keras/spec.py).

    -> ([(pair, category name)], counts): "dropped_category" for labels the spec drops on purpose
    (e.g. fashion1's dresses), "unknown_category" for labels no category claims.
    """
    kept, skipped, memo = [], collections.Counter(), {}
    for pair in pairs:
        if pair.label not in memo:
            memo[pair.label] = labeler(pair.label)
        target = memo[pair.label]
        if target is DROP:
            skipped["dropped_category"] += 1
        elif target is None:
            skipped["unknown_category"] += 1
        else:
            kept.append((pair, target))
    return kept, skipped


def plan_pairs(config, raw, skipped, path_of, check_images, log, *, labeler) -> dict:
    """Kept pairs (with crop, other boxes, image paths, pair_id) and drop counts by reason.

    `labeler`: the spec's LabelMatcher (source label -> category, DROP or None); `path_of(id, role)`
    the reader's image paths; `check_images(paths)` -> per path a reason or None, or (reason, displayed
    (width, height)) — with a size, a crop under crop.MIN_SIDE / over crop.MAX_ASPECT is dropped as
    "degenerate_crop". A scene that lists one product several times (two identical chairs)
    gives ONE pair holding every
    distinct box ("boxes"; "box" is the first), cropped so that no copy remains (crop.ctl_crop_all);
    the extra rows count as "duplicate_pair" in `dropped` (they form no pair of their own) and the
    result reports "duplicate_boxes" (extra distinct boxes of kept pairs) and
    "pairs_with_duplicate_boxes". `other_boxes` hold every other annotated product of the scene,
    including those whose pair is dropped (e.g. dresses: their `other_categories` entry is then the
    source label), mapped into the crop. "by_category": per category, the rows read, the pairs
    kept, and the drops by reason.
    """
    dropped = collections.Counter(skipped)
    # (scene, product) -> its first row / its distinct boxes in input order (a dict: one lookup per
    # row, so a product listed many times with jittered boxes stays linear in rows)
    first, boxes_of, rows_of = {}, {}, collections.Counter()
    for pair in raw:
        key = (pair.scene_id, pair.product_id)
        rows_of[key] += 1
        if key in first:
            dropped["duplicate_pair"] += 1
            boxes_of[key].setdefault(tuple(pair.box), None)
            continue
        first[key], boxes_of[key] = pair, {tuple(pair.box): None}
    boxes_of = {key: list(boxes) for key, boxes in boxes_of.items()}
    labelled, label_skips = assign_categories(first.values(), labeler)
    dropped.update(label_skips)
    category_of = {(pair.scene_id, pair.product_id): category for pair, category in labelled}
    # Per category: rows read, and why the pairs that did not survive were dropped (build --dry_run).
    per_category = collections.defaultdict(collections.Counter)
    for key, category in category_of.items():
        per_category[category]["rows"] += rows_of[key]
        per_category[category]["duplicate_pair"] += rows_of[key] - 1
    by_scene = collections.defaultdict(list)  # scene -> [(product, box, category or source label)]
    for key, boxes in boxes_of.items():
        label = category_of.get(key, first[key].label)
        by_scene[key[0]].extend((key[1], box, label) for box in boxes)

    candidates = []
    for pair, category in labelled:
        if category not in config.categories:
            dropped["unknown_category"] += 1
            continue
        boxes = boxes_of[(pair.scene_id, pair.product_id)]
        crop_box, reason = crop.ctl_crop_all(boxes, config.crop_sides, config.crop_expand, config.crop_min_area)
        if crop_box is None:
            dropped[reason] += 1
            per_category[category][reason] += 1
            continue
        # Every other annotated product of the scene, even one whose own pair is dropped.
        others = [(crop.map_box(box, crop_box), c) for product, box, c in by_scene[pair.scene_id]
                  if product != pair.product_id]
        others = [(box, c) for box, c in others if box is not None]
        candidates.append({
            "scene_id": pair.scene_id, "product_id": pair.product_id, "category": category,
            "category_index": config.categories.index(category), "box": boxes[0], "boxes": list(boxes),
            "crop_box": crop_box, "other_boxes": [b for b, _ in others], "other_categories": [c for _, c in others],
            "scene_path": path_of(pair.scene_id, "scene"),
            "product_path": path_of(pair.product_id, "product")})

    paths = sorted({c["scene_path"] for c in candidates} | {c["product_path"] for c in candidates})
    log(f"checking {len(paths)} images")
    status, sizes = {}, {}
    for path, result in zip(paths, check_images(paths)):
        status[path], sizes[path] = result if isinstance(result, tuple) else (result, None)
        if len(status) % 2000 == 0:
            log(f"checked {len(status)}/{len(paths)} images")
    kept = []
    for candidate in candidates:
        reason = status[candidate["scene_path"]] or status[candidate["product_path"]]
        size = sizes[candidate["scene_path"]]
        if not reason and size is not None and crop.crop_is_degenerate(candidate["crop_box"], size):
            reason = "degenerate_crop"
        if reason:
            dropped[reason] += 1
            per_category[candidate["category"]][reason] += 1
        else:
            kept.append(candidate)
    kept.sort(key=lambda c: (c["scene_id"], c["product_id"]))
    for pair_id, pair in enumerate(kept):
        pair["pair_id"] = pair_id
    scenes_without_pairs = len({p.scene_id for p in raw} - {c["scene_id"] for c in kept})
    by_category, kept_of = {}, collections.Counter(c["category"] for c in kept)
    for name in config.categories:
        counts = per_category.get(name, collections.Counter())
        by_category[name] = {"rows": counts.pop("rows", 0), "kept": kept_of[name],
                             "dropped": {r: n for r, n in sorted(counts.items()) if n}}
    return {"pairs": kept, "dropped": dropped, "pairs_in": len(raw) + sum(skipped.values()),
            "by_category": by_category,
            "scenes_without_pairs": scenes_without_pairs,
            "duplicate_boxes": sum(len(c["boxes"]) - 1 for c in kept),
            "pairs_with_duplicate_boxes": sum(len(c["boxes"]) > 1 for c in kept),
            # Rows whose box overran the image slightly and was clipped (crop.clip_box), kept or not.
            "clipped_boxes": sum(bool(getattr(p, "clipped", False)) for p in raw)}


def split_scenes(scenes: list[str], fractions, seed: int) -> dict[str, list[str]]:
    """Seeded scene-level split; val and test get at least one scene each when there are >= 3."""
    order = [scenes[i] for i in np.random.default_rng(seed).permutation(len(scenes))]
    n = len(order)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    return {"train": sorted(order[:n - n_val - n_test]), "val": sorted(order[n - n_val - n_test:n - n_test]),
            "test": sorted(order[n - n_test:])}


def make_questions(pairs: list[dict], split_index: int, seed: int) -> tuple[list[dict], int]:
    """One question per pair: the negative is a seeded draw among the split's products of the same
    category, excluding every product paired with the same scene (those are positives too)."""
    rng = np.random.default_rng([seed, split_index])
    by_category, in_scene = collections.defaultdict(set), collections.defaultdict(set)
    for pair in pairs:
        by_category[pair["category"]].add(pair["product_id"])
        in_scene[pair["scene_id"]].add(pair["product_id"])
    questions, skipped = [], 0
    for pair in pairs:
        candidates = sorted(by_category[pair["category"]] - in_scene[pair["scene_id"]])
        if not candidates:
            skipped += 1
            continue
        questions.append({"question_id": len(questions), "pair_id": pair["pair_id"],
                          "scene_id": pair["scene_id"], "category": pair["category"],
                          "positive": pair["product_id"],
                          "negative": candidates[int(rng.integers(len(candidates)))]})
    return questions, skipped
