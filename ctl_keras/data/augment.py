"""Image preprocessing: decode, train/eval views, per-element seeds, and dict->dict ops for tf.data.

All randomness is stateless (`tf.image.stateless_*` driven by explicit `[2]` seeds), so a view depends
only on its seed: the same (config.seed, epoch_index, pair_id) gives the same crop whatever the parallelism,
and epoch e of a resumed run equals epoch e of an uninterrupted one.

Images leave here as float32 [S, S, 3], RGB, values in 0..255 (S = config.image_size); the backbone
does the ResNet50 preprocessing itself.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import tensorflow as tf

from ctl_keras.config import SALT_VIEWS

Op = Callable[[dict], dict]


def epoch_key(seed: int, epoch_index: int, salt: int) -> tf.Tensor:
    """int64 [2] key for one purpose of one epoch (`epoch_index` is 0-based; logs count from 1)."""
    base = tf.constant([int(seed), int(epoch_index)], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.constant(int(salt), tf.int64))


def element_seeds(seed: int, epoch_index: int, pair_id: tf.Tensor, num: int) -> tf.Tensor:
    """int64 [num, 2] seeds for the views of one pair; a function of (seed, epoch_index, pair_id) only."""
    key = tf.random.experimental.stateless_fold_in(
        epoch_key(seed, epoch_index, SALT_VIEWS), tf.cast(pair_id, tf.int64))
    return tf.random.experimental.stateless_split(key, num)


def block_shuffle(ds: tf.data.Dataset, block: int, key: tf.Tensor) -> tf.data.Dataset:
    """Permute each run of `block` elements with the stateless seed fold_in(key, block index).

    Unlike Dataset.shuffle, the order does not depend on TF's global seed or op counters."""
    def permute(i, batch):
        seed = tf.random.experimental.stateless_fold_in(key, i)
        return tf.random.experimental.stateless_shuffle(batch, seed=seed)

    return ds.batch(max(int(block), 1)).enumerate().map(permute).unbatch()


def decode_image(jpeg_bytes: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG bytes -> float32 [H, W, 3] in 0..255 (greyscale and RGBA become RGB)."""
    image = tf.io.decode_image(jpeg_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.cast(image, tf.float32)


def _resize(image: tf.Tensor, config) -> tf.Tensor:
    size = config.resize_size
    # Bilinear weights are convex, so the 0..255 range is kept without clipping.
    return tf.image.resize(image, [size, size], method="bilinear")


def train_view(image: tf.Tensor, seed: tf.Tensor, config) -> tf.Tensor:
    """Resize to resize_size, stateless random image_size crop, stateless random mirror."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    size = config.image_size
    image = tf.image.stateless_random_crop(_resize(image, config), [size, size, 3], seed=crop_seed)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    image.set_shape([size, size, 3])
    return image


def eval_view(image: tf.Tensor, config) -> tf.Tensor:
    """Resize to resize_size, then the central image_size crop."""
    size = config.image_size
    offset = (config.resize_size - size) // 2
    image = _resize(image, config)[offset:offset + size, offset:offset + size, :]
    image.set_shape([size, size, 3])
    return image


# ---------------------------------------------------------------- dict -> dict ops
def decode_op(keys: Mapping[str, str]) -> Op:
    """{out_key: in_key}: decode d[in_key] into d[out_key] and drop the encoded bytes."""

    def op(d: dict) -> dict:
        out = {k: v for k, v in d.items() if k not in keys.values()}
        for out_key, in_key in keys.items():
            out[out_key] = decode_image(d[in_key])
        return out

    return op


def train_view_op(keys: Sequence[str], config, seed_key: str = "seeds") -> Op:
    """Random view of each image key; d[seed_key] is int64 [len(keys), 2], one seed per image.

    The seeds are consumed (removed from the output)."""

    def op(d: dict) -> dict:
        out = {k: v for k, v in d.items() if k != seed_key}
        for i, key in enumerate(keys):
            out[key] = train_view(d[key], d[seed_key][i], config)
        return out

    return op


def eval_view_op(keys: Sequence[str], config) -> Op:
    """Center view of each image key."""

    def op(d: dict) -> dict:
        out = dict(d)
        for key in keys:
            out[key] = eval_view(d[key], config)
        return out

    return op


def seeds_op(seed: int, epoch_index: int, num: int, id_key: str = "pair_id", seed_key: str = "seeds") -> Op:
    """Adds d[seed_key] = element_seeds(seed, epoch_index, d[id_key], num)."""

    def op(d: dict) -> dict:
        return {**d, seed_key: element_seeds(seed, epoch_index, d[id_key], num)}

    return op


def rename_op(mapping: Mapping[str, str], keep: Sequence[str] = ()) -> Op:
    """Keep only `keep` plus the keys of `mapping` ({in_key: out_key}) under their new names."""

    def op(d: dict) -> dict:
        out = {k: d[k] for k in keep}
        out.update({new: d[old] for old, new in mapping.items()})
        return out

    return op


def chain(*ops: Op) -> Op:
    """Compose ops left to right (one tf.data map instead of several)."""

    def op(d: dict) -> dict:
        for o in ops:
            d = o(d)
        return d

    return op
