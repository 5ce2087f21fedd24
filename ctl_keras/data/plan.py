"""Planning a build, before any output: dedupe, label, crop, check images, split, questions.

Pure Python (no TensorFlow); `build_dataset` runs it, then writes what it planned.
"""

from __future__ import annotations

import collections

import numpy as np

from ctl_keras.data import crop, stl


def plan_pairs(config, raw, skipped, path_of, check_images, log) -> dict:
    """Kept pairs (with crop, other boxes, image paths, pair_id) and drop counts by reason.

    A scene that lists one product several times (two identical chairs) gives ONE pair holding every
    distinct box ("boxes"; "box" is the first), cropped so that no copy remains (crop.ctl_crop_all);
    the extra rows count as "duplicate_pair" in `dropped` (they form no pair of their own) and the
    result reports "duplicate_boxes" (extra distinct boxes of kept pairs) and
    "pairs_with_duplicate_boxes". `other_boxes` hold every other annotated product of the scene,
    including those whose pair is dropped (e.g. dresses: their `other_categories` entry is then the
    source label), mapped into the crop.
    """
    dropped = collections.Counter(skipped)
    first, boxes_of = {}, {}  # (scene, product) -> its first row / its distinct boxes in input order
    for pair in raw:
        key = (pair.scene_id, pair.product_id)
        if key in first:
            dropped["duplicate_pair"] += 1
            if tuple(pair.box) not in boxes_of[key]:
                boxes_of[key].append(tuple(pair.box))
            continue
        first[key], boxes_of[key] = pair, [tuple(pair.box)]
    labelled, label_skips = stl.assign_categories(list(first.values()), config.dataset)
    dropped.update(label_skips)
    category_of = {(pair.scene_id, pair.product_id): category for pair, category in labelled}
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
            continue
        # Every other annotated product of the scene, even one whose own pair is dropped.
        others = [(crop.map_box(box, crop_box), c) for product, box, c in by_scene[pair.scene_id]
                  if product != pair.product_id]
        others = [(box, c) for box, c in others if box is not None]
        candidates.append({
            "scene_id": pair.scene_id, "product_id": pair.product_id, "category": category,
            "category_index": config.categories.index(category), "box": boxes[0], "boxes": list(boxes),
            "crop_box": crop_box, "other_boxes": [b for b, _ in others], "other_categories": [c for _, c in others],
            "scene_path": path_of(pair.scene_id), "product_path": path_of(pair.product_id)})

    paths = sorted({c["scene_path"] for c in candidates} | {c["product_path"] for c in candidates})
    log(f"checking {len(paths)} images")
    status = {}
    for path, reason in zip(paths, check_images(paths)):
        status[path] = reason
        if len(status) % 2000 == 0:
            log(f"checked {len(status)}/{len(paths)} images")
    kept = []
    for candidate in candidates:
        reason = status[candidate["scene_path"]] or status[candidate["product_path"]]
        if reason:
            dropped[reason] += 1
        else:
            kept.append(candidate)
    kept.sort(key=lambda c: (c["scene_id"], c["product_id"]))
    for pair_id, pair in enumerate(kept):
        pair["pair_id"] = pair_id
    scenes_without_pairs = len({p.scene_id for p in raw} - {c["scene_id"] for c in kept})
    return {"pairs": kept, "dropped": dropped, "pairs_in": len(raw) + sum(skipped.values()),
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
