"""The pipeline's steps as plain functions (each one a Beam Map/FlatMap): check, plan, encode, write.

Planning is `data/plan.py`, unchanged: it runs once, over the whole dataset, with the image checks
done in parallel before it (a side input). Everything after it is keyed by output file, and each
file is written by one call from values sorted by a key the plan fixed, so the bytes never depend
on the runner, the worker count or the order in which Beam delivers elements.
"""

from __future__ import annotations

import collections
import json

import numpy as np

from ctl_keras.builder import files, records
from ctl_keras.config import SPLITS
from ctl_keras.data import crop, leakage
from ctl_keras.data import encoding as tfrecords  # names + encoding, without TensorFlow
from ctl_keras.data import plan as plan_lib



def _quiet(message: str) -> None:
    pass


def dry_plan(config, raw, skipped, path_of, labeler) -> tuple[dict, list[str]]:
    """`plan_pairs` as if every image were fine: (its plan, the images it asked about)."""
    asked: list[str] = []

    def record(paths):
        asked.extend(paths)
        return [None] * len(paths)

    planned = plan_lib.plan_pairs(config, raw, skipped, path_of, record, _quiet, labeler=labeler)
    return planned, asked


def _tick(tick) -> None:
    if tick is not None:
        tick(1)


def check_image(path: str, tick=None) -> tuple[str, tuple]:
    """(path, (reason or None, displayed size)); `tick`: a progress.Ticker (the build's bar), or None."""
    result = crop.inspect_image(path)
    _tick(tick)
    return path, result


def missing_images(status: dict) -> dict:
    """{"count", "first"}: the checked images that were not found, and the first path (sorted) looked
    for, so a table whose ids do not name its files (1001.0 for 1001.jpg) says where it looked."""
    missing = sorted(path for path, result in status.items() if result and result[0] == "missing_image")
    return {"count": len(missing), "first": missing[0] if missing else None}


# ---------------------------------------------------------------- the plan (one element, whole dataset)
def plan(bundle: dict, status: dict) -> dict:
    """Plan, split by scene, lay out every output file; {"error": ...} if a split is empty."""
    config, raw, skipped = bundle["config"], bundle["raw"], bundle["skipped"]
    planned = plan_lib.plan_pairs(config, raw, skipped, bundle["path_of"],
                                  lambda paths: [status[p] for p in paths], _quiet, labeler=bundle["spec"].matcher())
    kept = planned["pairs"]
    # Leakage (data/leakage.py): a dHash per kept scene; --dedupe_scenes drops near-duplicates before the split.
    hashes = leakage.scene_hashes({p["scene_id"]: p["scene_path"] for p in kept}, files.read_bytes)
    near_duplicates = leakage.duplicate_scenes(hashes) if bundle.get("dedupe_scenes") else {}
    kept = [p for p in kept if p["scene_id"] not in near_duplicates]
    by_split = plan_lib.split_scenes(sorted({p["scene_id"] for p in kept}), config.split_fractions, config.seed)
    missing = missing_images(status)
    for split in SPLITS:
        if not by_split[split]:
            return {"error": f"split {split!r} is empty: only {len(kept)} usable pairs in "
                             f"{len({p['scene_id'] for p in kept})} scenes (dropped: {dict(planned['dropped'])})"
                             + (f"; {missing['count']} images not found, the first looked for: {missing['first']}"
                                if missing["count"] else "")}
    split_of = {scene: split for split, scenes in by_split.items() for scene in scenes}
    layout = {"pairs": [], "products": [], "questions": {}, "files": {}}
    splits = {split: _layout_split(config, split, [p for p in kept if split_of[p["scene_id"]] == split], layout)
              for split in SPLITS}
    manifest = {"dataset": config.dataset, "schema_version": tfrecords.SCHEMA_VERSION,
                "pairs_in": planned["pairs_in"], "pairs_kept": len(kept),
                "pairs_dropped": dict(sorted(planned["dropped"].items())),
                "scenes_dropped": {"scene_without_pairs": planned["scenes_without_pairs"],
                                   **({"near_duplicate": len(near_duplicates)} if bundle.get("dedupe_scenes") else {})},
                "leakage": leakage.count_leakage(
                    {split: [p for p in kept if split_of[p["scene_id"]] == split] for split in SPLITS}, hashes),
                # A (scene, product) listed with several boxes is cropped clear of all of them.
                "boxes": {name: planned[name] for name in (
                    "duplicate_boxes", "pairs_with_duplicate_boxes", "clipped_boxes")},
                "categories": list(config.categories), "splits": splits, "flags": bundle["flags"],
                "missing_images": missing,
                "pairs_by_category": planned["by_category"],
                "config": config.to_dict(), "spec": bundle["spec"].to_dict()}
    layout["product_paths"] = sorted({p["product_path"] for p in kept})
    if bundle.get("tick") is not None:  # the images to encode, now that they are known
        bundle["tick"].add_total(len(layout["pairs"]) + len(layout["product_paths"]))
    return {"error": None, "manifest": json.loads(json.dumps(manifest)), **layout}


def _layout_split(config, split, pairs, layout) -> dict:
    """Which pair goes to which shard at which position (the pre-Beam builder's exact layout)."""
    # Train pairs are shuffled across shards; val/test stay in pair_id order ("file order").
    if split == "train":
        pairs = [pairs[i] for i in np.random.default_rng([config.seed, 7]).permutation(len(pairs))]
    n_shards = config.num_shards if split == "train" else max(1, config.num_shards // 8)
    n_shards = max(1, min(n_shards, len(pairs)))
    shards = []
    for i in range(n_shards):
        name = tfrecords.pair_shard_name(split, i, n_shards)
        # Contiguous slices: reading the shards in order gives val/test pairs in pair_id order.
        chunk = pairs[len(pairs) * i // n_shards:len(pairs) * (i + 1) // n_shards]
        layout["pairs"] += [{**pair, "file": name, "position": j} for j, pair in enumerate(chunk)]
        layout["files"][name] = len(chunk)
        shards.append(name)

    products = {}
    for pair in sorted(pairs, key=lambda p: p["pair_id"]):  # first occurrence fixes the category
        products.setdefault(pair["product_id"], pair)
    per_category = collections.Counter()
    for index, category in enumerate(config.categories):
        name = tfrecords.product_file_name(split, index)
        layout["files"][name] = 0
        for p in products.values():
            if p["category_index"] == index:
                layout["products"].append({"file": name, "product_id": p["product_id"], "category": category,
                                           "category_index": index, "product_path": p["product_path"]})
                layout["files"][name] += 1
        per_category[category] = layout["files"][name]
    info = {"scenes": len({p["scene_id"] for p in pairs}), "products": len(products), "pairs": len(pairs),
            "pair_shards": shards, "products_per_category": dict(per_category),
            "product_files": [tfrecords.product_file_name(split, i) for i in range(len(config.categories))],
            "questions": 0, "questions_skipped": 0}
    if split != "train":
        questions, skipped = plan_lib.make_questions(sorted(pairs, key=lambda p: p["pair_id"]),
                                                     SPLITS.index(split), config.seed)
        name = tfrecords.questions_file_name(split)
        # Sorted keys, indent 1: the same bytes for the same object (atomic.write_json with indent=1).
        layout["questions"][name] = (json.dumps(questions, indent=1, sort_keys=True) + "\n").encode("utf-8")
        layout["files"][name] = 1
        info.update(questions=len(questions), questions_skipped=skipped)
    return info


# ---------------------------------------------------------------- per element
# A product's image is decoded and re-encoded once, not once per pair and again for the product file:
# scenes are cropped in parallel, then joined with their product's JPEG by product path.
def crop_scene(job: dict, tick=None) -> tuple[str, tuple]:
    scene, full = crop.scene_jpegs(job["scene_path"], job["crop_box"])
    _tick(tick)
    return job["product_path"], ("pair", job, scene, full)


def product_image(path: str, tick=None) -> tuple[str, tuple]:
    # Module attribute lookups at call time (crop.product_jpeg): tests can make a step fail.
    jpeg = crop.product_jpeg(path)
    _tick(tick)
    return path, ("jpeg", jpeg)


def product_entry(job: dict) -> tuple[str, tuple]:
    return job["product_path"], ("product", job)


def assemble(item) -> list[tuple[str, tuple]]:
    """(product path, its JPEG + the pairs and product files that need it) -> (file, (sort key, record))."""
    _, values = item
    jpeg = next(v[1] for v in values if v[0] == "jpeg")
    out = []
    for value in values:
        if value[0] == "pair":
            _, job, scene, full = value
            out.append((job["file"], (job["position"], tfrecords.encode_pair(
                pair_id=job["pair_id"], scene_id=job["scene_id"], product_id=job["product_id"],
                category=job["category"], category_index=job["category_index"], scene_jpeg=scene,
                full_scene_jpeg=full, product_jpeg=jpeg, product_box=job["box"], crop_box=job["crop_box"],
                other_boxes=job["other_boxes"], other_categories=job["other_categories"]))))
        elif value[0] == "product":
            job = value[1]
            out.append((job["file"], (job["product_id"], tfrecords.encode_product(
                product_id=job["product_id"], category=job["category"], category_index=job["category_index"],
                product_jpeg=jpeg))))
    return out


def write_file(staging: str, item) -> tuple[str, int]:
    """One output file from its sorted values (None entries only make sure the file exists)."""
    name, values = item
    values = sorted((v for v in values if v is not None), key=lambda v: v[0])
    path = files.join(staging, name)
    if name.endswith(".tfrecord"):
        count = [0]

        def write(f):
            count[0] = records.write_records(f, (record for _, record in values))

        files.write_atomic(path, write)
        return name, count[0]
    (_, data), = values  # questions-<split>.json: one value, the file's bytes
    files.write_bytes(path, data)
    return name, 1


def finish(written: list[tuple[str, int]], planned: dict, staging: str) -> str:
    """After every file: check each holds what the plan said, then stage the manifest."""
    if planned["error"] is None:
        got, expected = dict(written), planned["files"]
        if got != expected:
            wrong = sorted(n for n in expected.keys() | got.keys() if got.get(n) != expected.get(n))
            raise RuntimeError(f"output files differ from the plan: {[(n, got.get(n), expected.get(n)) for n in wrong[:5]]}")
    body = planned["manifest"] if planned["error"] is None else {"error": planned["error"]}
    files.write_bytes(files.join(staging, tfrecords.MANIFEST_NAME),
                      (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return staging
