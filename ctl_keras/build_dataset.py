r"""Raw dataset -> CTL-cropped pairs -> sharded TFRecords (schema: tf_records/README.md).

    python -m ctl_keras.build_dataset --dataset=synthetic --out=tf_records/synthetic
    python -m ctl_keras.build_dataset --dataset=home --out=tf_records/home \
        --pairs=home.json --categories=home-cat.json --images_dir=images/
    python -m ctl_keras.build_dataset --dataset=fashion1 --out=tf_records/fashion1 \
        --street2shop_dir=street2shop/ --images_dir=images/

Everything that can fail on the whole input (files, dataset name, empty split) is checked before
the first output byte; bad rows are skipped and counted. Files are written atomically and
manifest.json last, after removing the previous one, so a directory is trusted only when complete.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import sys
from typing import Callable, Iterator

import numpy as np
from absl import app, flags, logging

from ctl_keras import config as config_lib
from ctl_keras.data import crop, stl, street2shop, tfrecords
from ctl_keras.data import plan as plan_lib

SPLITS = tfrecords.SPLITS


# ---------------------------------------------------------------- workers
@contextlib.contextmanager
def _pool(workers: int):
    """A fork pool for the PIL work (workers never touch TF), or None to run inline."""
    if workers <= 1:
        yield None
        return
    pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _imap(pool, fn, items: list, window: int = 256) -> Iterator:
    """Ordered map; Pool.imap has no back-pressure, so feed it windows to bound the images held."""
    if pool is None:
        yield from map(fn, items)
        return
    for start in range(0, len(items), window):
        yield from pool.imap(fn, items[start:start + window], chunksize=4)


# ---------------------------------------------------------------- read (no output yet)
def _read(config, pairs, categories, images_dir, street2shop_dir):
    if config.dataset == "fashion1":
        missing = [n for n, v in (("--street2shop_dir", street2shop_dir), ("--images_dir", images_dir)) if not v]
    else:
        missing = [n for n, v in (("--pairs", pairs), ("--categories", categories), ("--images_dir", images_dir))
                   if not v]
    if missing:
        raise ValueError(f"--dataset={config.dataset} needs {' and '.join(missing)}")
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"images directory not found: {images_dir}")
    if config.dataset == "fashion1":
        raw, skipped = street2shop.read_street2shop(street2shop_dir, images_dir)
        return raw, skipped, functools.partial(street2shop.image_path, images_dir)
    raw, skipped = stl.read_stl(pairs, categories)
    return raw, skipped, functools.partial(stl.image_path, images_dir)


def _pair_records(pool, pairs: list[dict], progress) -> Iterator[bytes]:
    jobs = [(p["scene_path"], p["crop_box"], p["product_path"]) for p in pairs]
    for pair, (scene, full, product) in zip(pairs, _imap(pool, crop.crop_pair_images, jobs)):
        progress()
        yield tfrecords.encode_pair(
            pair_id=pair["pair_id"], scene_id=pair["scene_id"], product_id=pair["product_id"],
            category=pair["category"], category_index=pair["category_index"], scene_jpeg=scene,
            full_scene_jpeg=full, product_jpeg=product, product_box=pair["box"], crop_box=pair["crop_box"],
            other_boxes=pair["other_boxes"], other_categories=pair["other_categories"])


def _product_records(pool, products: list[dict]) -> Iterator[bytes]:
    jobs = [p["product_path"] for p in products]
    for product, jpeg in zip(products, _imap(pool, crop.product_jpeg, jobs)):
        yield tfrecords.encode_product(product_id=product["product_id"], category=product["category"],
                                       category_index=product["category_index"], product_jpeg=jpeg)


def _write_split(pool, config, out_dir, split, pairs, written, log) -> dict:
    split_index = SPLITS.index(split)
    # Train pairs are shuffled across shards; val/test stay in pair_id order ("file order").
    if split == "train":
        pairs = [pairs[i] for i in np.random.default_rng([config.seed, 7]).permutation(len(pairs))]
    n_shards = config.num_shards if split == "train" else max(1, config.num_shards // 8)
    n_shards = max(1, min(n_shards, len(pairs)))
    done = [0]

    def progress():
        done[0] += 1
        if done[0] % 500 == 0 or done[0] == len(pairs):
            log(f"{split}: {done[0]}/{len(pairs)} pairs")

    shards = []
    for i in range(n_shards):
        name = tfrecords.pair_shard_name(split, i, n_shards)
        written.append(name)
        # Contiguous slices: reading the shards in order gives val/test pairs in pair_id order.
        chunk = pairs[len(pairs) * i // n_shards:len(pairs) * (i + 1) // n_shards]
        tfrecords.write_records(os.path.join(out_dir, name), _pair_records(pool, chunk, progress))
        shards.append(name)

    products = {}
    for pair in sorted(pairs, key=lambda p: p["pair_id"]):  # first occurrence fixes the category
        products.setdefault(pair["product_id"], pair)
    per_category = {}
    for index, category in enumerate(config.categories):
        chosen = sorted((p for p in products.values() if p["category_index"] == index),
                        key=lambda p: p["product_id"])
        name = tfrecords.product_file_name(split, index)
        written.append(name)
        per_category[category] = tfrecords.write_records(os.path.join(out_dir, name),
                                                         _product_records(pool, chosen))
    log(f"{split}: wrote {len(shards)} pair shard(s) and {len(config.categories)} product files")

    info = {"scenes": len({p["scene_id"] for p in pairs}), "products": len(products), "pairs": len(pairs),
            "pair_shards": shards, "products_per_category": per_category,
            "product_files": [tfrecords.product_file_name(split, i) for i in range(len(config.categories))],
            "questions": 0, "questions_skipped": 0}
    if split != "train":
        questions, skipped = plan_lib.make_questions(sorted(pairs, key=lambda p: p["pair_id"]), split_index, config.seed)
        name = tfrecords.questions_file_name(split)
        written.append(name)
        tfrecords.write_json(os.path.join(out_dir, name), questions)
        info.update(questions=len(questions), questions_skipped=skipped)
    return info


def _remove_stale(out_dir: str, keep: set[str]) -> None:
    """Drop output files of an earlier build that this one did not rewrite (e.g. other shard counts)."""
    for name in os.listdir(out_dir):
        ours = name.startswith(("pairs-", "products-", "questions-")) or ".tmp-" in name
        if ours and name not in keep and os.path.isfile(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def build(config: config_lib.Config, out_dir, *, pairs=None, categories=None, images_dir=None,
          street2shop_dir=None, synthetic_kwargs=None, workers: int | None = None,
          log: Callable[[str], None] = logging.info) -> dict:
    """Build `config.dataset` into `out_dir`; returns the manifest (also written as manifest.json)."""
    out_dir = os.fspath(out_dir)
    workers = default_workers() if workers is None else max(1, int(workers))
    flag_values = {"pairs": pairs and os.fspath(pairs), "categories": categories and os.fspath(categories),
                   "images_dir": images_dir and os.fspath(images_dir),
                   "street2shop_dir": street2shop_dir and os.fspath(street2shop_dir),
                   "synthetic_kwargs": synthetic_kwargs or {}, "seed": config.seed,
                   "num_shards": config.num_shards}
    if config.dataset == "synthetic" and pairs is None:
        from ctl_keras.data import synthetic  # noqa: PLC0415 (only the synthetic dataset needs it)
        log(f"generating the synthetic dataset under {os.path.join(out_dir, 'raw')}")
        raw = synthetic.generate(os.path.join(out_dir, "raw"), **(synthetic_kwargs or {}))
        pairs, categories, images_dir = raw["pairs"], raw["categories"], raw["images_dir"]

    raw, skipped, path_of = _read(config, pairs, categories, images_dir, street2shop_dir)
    log(f"read {len(raw)} pairs ({sum(skipped.values())} rows skipped)")
    with _pool(workers) as pool:
        plan = plan_lib.plan_pairs(config, raw, skipped, path_of,
                                  lambda paths: _imap(pool, crop.check_image, paths), log)
        kept = plan["pairs"]
        by_split = plan_lib.split_scenes(sorted({p["scene_id"] for p in kept}), config.split_fractions, config.seed)
        for split in SPLITS:
            if not by_split[split]:
                raise ValueError(
                    f"split {split!r} is empty: only {len(kept)} usable pairs in "
                    f"{len({p['scene_id'] for p in kept})} scenes (dropped: {dict(plan['dropped'])})")
        split_of = {scene: split for split, scenes in by_split.items() for scene in scenes}

        os.makedirs(out_dir, exist_ok=True)
        manifest_path = os.path.join(out_dir, tfrecords.MANIFEST_NAME)
        if os.path.exists(manifest_path):
            os.remove(manifest_path)  # from here on the directory is untrusted until we finish
        written: list[str] = []
        try:
            splits = {split: _write_split(pool, config, out_dir, split,
                                          [p for p in kept if split_of[p["scene_id"]] == split], written, log)
                      for split in SPLITS}
        except BaseException:
            _remove_stale(out_dir, keep=set())  # no manifest any more: leave no output files either
            raise
    _remove_stale(out_dir, set(written))
    manifest = {"dataset": config.dataset, "schema_version": tfrecords.SCHEMA_VERSION,
                "pairs_in": plan["pairs_in"], "pairs_kept": len(kept),
                "pairs_dropped": dict(sorted(plan["dropped"].items())),
                "scenes_dropped": {"scene_without_pairs": plan["scenes_without_pairs"]},
                "categories": list(config.categories), "splits": splits, "flags": flag_values,
                "config": config.to_dict()}
    manifest = json.loads(json.dumps(manifest))  # return what a reader of the file gets (lists, not tuples)
    tfrecords.write_json(manifest_path, manifest)
    log(f"built {config.dataset}: {len(kept)}/{plan['pairs_in']} pairs kept "
        + ", ".join(f"{s}={splits[s]['pairs']}" for s in SPLITS) + f" -> {out_dir}")
    return manifest


FLAGS = flags.FLAGS


def _define_flags():
    # Only when run as a script: importing the builder (tests, the demo) must not claim flag names
    # such as --dataset that the training CLIs define too.
    flags.DEFINE_enum("dataset", None, list(config_lib.DATASETS), "Dataset to build.")
    flags.DEFINE_string("out", None, "Output directory, e.g. tf_records/<dataset>.")
    flags.DEFINE_string("pairs", None, "STL pairs JSON (fashion2, home; optional for synthetic).")
    flags.DEFINE_string("categories", None, "STL product -> category path JSON.")
    flags.DEFINE_string("images_dir", None, "Directory of <id>.jpg images.")
    flags.DEFINE_string("street2shop_dir", None, "Exact Street2Shop root (fashion1): holds meta/json/.")
    flags.DEFINE_integer("workers", None, "Image worker processes (default: min(8, CPUs)).")
    flags.DEFINE_integer("seed", None, "Split / question seed (default: the config's).")
    flags.DEFINE_integer("num_shards", None, "Train pair shards (default: the config's).")
    flags.DEFINE_bool("smoke", False, "Tiny config; for synthetic also a tiny generated set.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.dataset or not FLAGS.out:
        raise app.UsageError("--dataset and --out are required")
    overrides = {k: v for k, v in (("seed", FLAGS.seed), ("num_shards", FLAGS.num_shards)) if v is not None}
    synthetic_kwargs = None
    if FLAGS.dataset == "synthetic" and FLAGS.smoke:
        synthetic_kwargs = {"num_scenes": 48, "scene_size": 96, "product_size": 64}
    try:
        config = config_lib.get_config(FLAGS.dataset, smoke=FLAGS.smoke, **overrides)
        build(config, FLAGS.out, pairs=FLAGS.pairs, categories=FLAGS.categories, images_dir=FLAGS.images_dir,
              street2shop_dir=FLAGS.street2shop_dir, synthetic_kwargs=synthetic_kwargs, workers=FLAGS.workers,
              log=print)
    except (ValueError, FileNotFoundError) as e:
        print(f"build_dataset: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
