"""tf.data input pipeline over a built dataset directory (schema: tf_records/README.md).

Train triplets, with memory that does not grow with the catalog (beyond one id key per train pair):
- pair shards are read in a per-epoch permuted order, interleaved, then block-shuffled: every block
  of `config.shuffle_buffer` serialized records is permuted by a stateless seed of (seed, epoch_index);
- each category's product file (products-train-CC.tfrecord) is an endless stream of passes, each
  pass block-shuffled by (seed, epoch_index, category, pass) and cut into draws of K *distinct products*
  (all of them, repeated, when the category has fewer than K);
- `choose_from_datasets`, driven by the pairs' category stream, hands every pair the next draw of its
  category; the negative is the first candidate that is not a product of the pair's scene (the rule of
  `data/negatives.py`, shared with the feature cache and the baselines). K = 1 + the most products
  one scene has in one category, so a draw always holds a valid negative when one exists; pairs
  without one (their category has only their scene's products) are skipped and counted (logged).
The category stream is a second, identical read of the same shuffled shards (deterministic order),
which only parses `category_index`. Categories with fewer than two train products get no stream.

Everything random is stateless, so the output is a pure function of (config.seed, epoch_index).
`epoch_index` is 0-based (it seeds); logs and results count epochs from 1 (`epoch` = epoch_index + 1).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf
from absl import logging

from ctl_keras.config import SALT_PAIR_ORDER, SALT_PRODUCT_ORDER
from ctl_keras.data import negatives, tfrecords
from ctl_keras.data.augment import (block_shuffle, chain, decode_image, decode_op, epoch_key, eval_view,
                                    eval_view_op, rename_op, seeds_op, train_view, train_view_op)
from ctl_keras.data.dataset_dir import checked_manifest, pair_files, product_files, product_paths
# Lookup lives in data/dataset_dir.py; these two names stay importable here only for the modules another
# branch is rewriting (training/, evaluate.py, experiments.py, feature_cache/): import from dataset_dir.

__all__ = ["decode_image", "train_view", "eval_view", "make_dataset", "make_product_dataset", "raw_triplets",
           "raw_pairs", "raw_products"]

AUTOTUNE = tf.data.AUTOTUNE
_CYCLE = 4  # pair shards read at once
_PRODUCT_BLOCK = 256  # bounds the product records one category stream holds in RAM


# ---------------------------------------------------------------- ordering
def _shuffled_pairs(files: list[str], config, epoch_index: int) -> tf.data.Dataset:
    order = np.random.default_rng([int(config.seed), int(epoch_index)]).permutation(len(files))
    ds = tf.data.Dataset.from_tensor_slices([files[i] for i in order]).interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), _CYCLE), block_length=1,
        num_parallel_calls=AUTOTUNE, deterministic=True)
    return block_shuffle(ds, config.shuffle_buffer, epoch_key(config.seed, epoch_index, SALT_PAIR_ORDER))


def _candidate_stream(path: str, key: tf.Tensor, block: int, count: int, k: int) -> tf.data.Dataset:
    """Endless serialized [k] draws of k distinct products of a `count`-product file (count >= 2); a file
    with fewer than k products gives all of them in every draw (repeated to k)."""
    def one_pass(r):
        d = block_shuffle(tf.data.TFRecordDataset(path), block, tf.random.experimental.stateless_fold_in(key, r))
        if count < k:
            return d.repeat(math.ceil(k / count)).take(k).batch(k)
        # Wrap-around: the pass's last draw continues with its first products, which differ from it.
        return d.concatenate(d.take(k - 1)).batch(k, drop_remainder=True)

    return tf.data.Dataset.counter().flat_map(one_pass)


@functools.lru_cache(maxsize=4)
def _train_pair_index(stamped: tuple[tuple[str, int, int], ...]) -> dict:
    """scene_id, product_id, category_index of every train pair (ids only), read once per process and
    version of the shards: `stamped` is (path, size, mtime) per shard, so a rebuild is read again."""
    cols = {"scene_id": [], "product_id": [], "category_index": []}
    ds = tf.data.TFRecordDataset([path for path, _, _ in stamped]).map(_parser(list(cols)), num_parallel_calls=AUTOTUNE)
    for batch in ds.batch(4096).as_numpy_iterator():
        for name in cols:
            cols[name].extend(batch[name].tolist())
    return {name: np.array(v, dtype=object if name != "category_index" else np.int64) for name, v in cols.items()}


def _stamped(files: list[str]) -> tuple[tuple[str, int, int], ...]:
    return tuple((f, (st := tf.io.gfile.stat(f)).length, st.mtime_nsec) for f in files)


def split_scene_ids(data_dir, split: str) -> set[str]:
    """Scene ids of a split's pairs (ids only; the train split's come from the cached pair index)."""
    files = pair_files(data_dir, split)
    if split == "train":
        return {s.decode() if isinstance(s, bytes) else s for s in _train_pair_index(_stamped(files))["scene_id"]}
    ds = tf.data.TFRecordDataset(files).map(_parser(["scene_id"]), num_parallel_calls=AUTOTUNE)
    return {s.decode() for batch in ds.batch(4096).as_numpy_iterator() for s in batch["scene_id"].tolist()}


def _exclusions(files: list[str], counts: dict[int, int]):
    """(scene, product) membership table of the train pairs, draw size K and the skipped-pair count."""
    index = _train_pair_index(_stamped(files))
    skipped = negatives.count_without_negative(index["scene_id"], index["product_id"], index["category_index"],
                                               counts)
    keys = [negatives.pair_key(s, p) for s, p in zip(index["scene_id"], index["product_id"])]
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys or [""], tf.string),
                                            tf.ones(max(len(keys), 1), tf.int64)), default_value=0)
    return table, negatives.candidates_per_draw(index["scene_id"], index["category_index"]), skipped


def _parser(keys, features=tfrecords.PAIR_FEATURES):
    spec = {k: features[k] for k in keys}
    return lambda serialized: tf.io.parse_single_example(serialized, spec)


# ---------------------------------------------------------------- datasets
def _triplet_records(config, manifest, data_dir, epoch_index: int, scene_key: str) -> tf.data.Dataset:
    products = product_files(data_dir, manifest, "train")
    usable = [(c, path, n) for c, path, n in products if n >= 2]
    if not usable:
        raise ValueError(f"split 'train' in {data_dir} has no category with two or more products")
    lookup = np.full(len(manifest["categories"]), -1, np.int64)
    for stream, (c, _, _) in enumerate(usable):
        lookup[c] = stream
    lookup = tf.constant(lookup)
    stream_of = lambda d: tf.gather(lookup, d["category_index"])

    files = pair_files(data_dir, "train")
    in_scene, k, skipped = _exclusions(files, {c: n for c, _, n in products})
    if skipped:
        logging.warning("%d train pairs are skipped: their category has no train product outside their "
                        "scene, so no negative can be drawn", skipped)
    selector = (_shuffled_pairs(files, config, epoch_index).map(_parser(["category_index"]))
                .map(stream_of).filter(lambda s: s >= 0))
    pairs = (_shuffled_pairs(files, config, epoch_index)
             .map(_parser(["pair_id", "scene_id", "product_id", "category_index", scene_key, "product_jpeg"]),
                  num_parallel_calls=AUTOTUNE)
             .filter(lambda d: stream_of(d) >= 0))
    product_key = epoch_key(config.seed, epoch_index, SALT_PRODUCT_ORDER)
    block = min(config.shuffle_buffer, _PRODUCT_BLOCK)
    candidates = tf.data.Dataset.choose_from_datasets(
        [_candidate_stream(path, tf.random.experimental.stateless_fold_in(product_key, c), block, n, k)
         for c, path, n in usable], selector)

    def pick_negative(pair, draw):
        cand = tf.io.parse_example(draw, {k: tfrecords.PRODUCT_FEATURES[k]
                                          for k in ("product_id", "product_jpeg")})
        keys = tf.strings.join([pair["scene_id"], negatives.KEY_SEPARATOR, cand["product_id"]])
        valid = tf.equal(in_scene.lookup(keys), 0)  # not a product of this scene (the positive included)
        i = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)  # the first valid candidate
        return {"scene_jpeg": pair[scene_key], "positive_jpeg": pair["product_jpeg"],
                "negative_jpeg": cand["product_jpeg"][i], "category": tf.cast(pair["category_index"], tf.int32),
                "pair_id": pair["pair_id"], "positive_id": pair["product_id"],
                "negative_id": tf.where(tf.reduce_any(valid), cand["product_id"][i], "")}

    # No valid candidate in the draw means none exists (see the module docstring): the pair is skipped.
    return (tf.data.Dataset.zip(pairs, candidates)
            .map(pick_negative, num_parallel_calls=AUTOTUNE)
            .filter(lambda d: tf.not_equal(d["negative_id"], "")))


def _eval_pairs(config, data_dir, split: str, scene_key: str) -> tf.data.Dataset:
    keys = ["pair_id", "scene_id", "product_id", "category_index", scene_key, "product_jpeg"]
    fn = chain(_parser(keys),
               lambda d: {**d, "category": tf.cast(d["category_index"], tf.int32)},
               rename_op({"product_id": "positive_id", scene_key: "scene_jpeg", "product_jpeg": "positive_jpeg"},
                         keep=["pair_id", "scene_id", "category"]),
               decode_op({"scene": "scene_jpeg", "positive": "positive_jpeg"}),
               eval_view_op(["scene", "positive"], config))
    return tf.data.TFRecordDataset(pair_files(data_dir, split)).map(fn, num_parallel_calls=AUTOTUNE)


def _finish(ds: tf.data.Dataset, batch_size: int | None) -> tf.data.Dataset:
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=False)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(AUTOTUNE).with_options(options)


def make_dataset(config, split: str, data_dir, *, epoch_index: int = 0, full_scene: bool = False,
                 batch_size: int | None = None) -> tf.data.Dataset:
    """Train: one epoch (0-based `epoch_index`) of shuffled triplets; val/test: every pair once in file order, center view."""
    manifest = checked_manifest(config, split, data_dir)
    scene_key = "full_scene_jpeg" if full_scene else "scene_jpeg"
    if split == "train":
        views = chain(decode_op({"scene": "scene_jpeg", "positive": "positive_jpeg", "negative": "negative_jpeg"}),
                      seeds_op(config.seed, epoch_index, 3),
                      train_view_op(["scene", "positive", "negative"], config))
        ds = _triplet_records(config, manifest, data_dir, epoch_index, scene_key).map(views, num_parallel_calls=AUTOTUNE)
    else:
        ds = _eval_pairs(config, data_dir, split, scene_key)
    return _finish(ds, batch_size)


def make_product_dataset(config, split: str, data_dir, *, batch_size: int | None = None) -> tf.data.Dataset:
    """Each product of the split once (category order, then file order), center view."""
    fn = chain(_parser(["product_id", "category_index", "product_jpeg"], tfrecords.PRODUCT_FEATURES),
               lambda d: {"product_id": d["product_id"], "category": tf.cast(d["category_index"], tf.int32),
                          "image": decode_image(d["product_jpeg"])},
               eval_view_op(["image"], config))
    return _finish(tf.data.TFRecordDataset(product_paths(data_dir, split, config)).map(fn, num_parallel_calls=AUTOTUNE), batch_size)


def raw_triplets(config, data_dir, *, epoch_index: int = 0, full_scene: bool = False) -> tf.data.Dataset:
    """The train triplets of make_dataset before decoding: `*_jpeg` bytes instead of images."""
    manifest = checked_manifest(config, "train", data_dir)
    scene_key = "full_scene_jpeg" if full_scene else "scene_jpeg"
    return _finish(_triplet_records(config, manifest, data_dir, epoch_index, scene_key), None)


def raw_pairs(data_dir, split: str) -> tf.data.Dataset:
    """Parsed, undecoded pair examples of a split in file order (tfrecords.parse_pair dicts)."""
    return tf.data.TFRecordDataset(pair_files(data_dir, split)).map(
        tfrecords.parse_pair, num_parallel_calls=AUTOTUNE)


def raw_products(data_dir, split: str) -> tf.data.Dataset:
    """Parsed, undecoded product examples of a split, category by category."""
    return tf.data.TFRecordDataset(product_paths(data_dir, split)).map(tfrecords.parse_product, num_parallel_calls=AUTOTUNE)
