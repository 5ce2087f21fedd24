"""TFRecord encode/parse for CTL pairs and products (schema: tf_records/README.md) and file names.

Encoding is plain Python (tf.train.Example) so the builder's worker processes never run TF ops;
parsing is tf-side (`tf.io.parse_single_example`) for the tf.data pipeline.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import tensorflow as tf

from ctl_keras import atomic

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- file names
def pair_shard_name(split: str, i: int, n: int) -> str:
    return f"pairs-{split}-{i:05d}-of-{n:05d}.tfrecord"


def product_file_name(split: str, category_index: int) -> str:
    return f"products-{split}-{category_index:02d}.tfrecord"


def questions_file_name(split: str) -> str:
    return f"questions-{split}.json"


MANIFEST_NAME = "manifest.json"


# ---------------------------------------------------------------- encoding
def _serialize(feature: dict) -> bytes:
    # deterministic=True fixes the order of the feature map, so rebuilds give the same bytes.
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _b(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def encode_pair(
    *,
    pair_id: int,
    scene_id: str,
    product_id: str,
    category: str,
    category_index: int,
    scene_jpeg: bytes,
    full_scene_jpeg: bytes,
    product_jpeg: bytes,
    product_box: Sequence[float],
    crop_box: Sequence[float],
    other_boxes: Sequence[Sequence[float]] = (),
    other_categories: Sequence[str] = (),
) -> bytes:
    """One serialized pair Example; `other_boxes` is a list of k boxes, flattened to 4k floats."""
    if len(other_boxes) != len(other_categories):
        raise ValueError(f"{len(other_boxes)} other_boxes but {len(other_categories)} other_categories")
    if len(product_box) != 4 or len(crop_box) != 4 or any(len(b) != 4 for b in other_boxes):
        raise ValueError("boxes must have 4 coordinates (left, top, right, bottom)")
    feature = {
        "pair_id": _ints([pair_id]),
        "scene_id": _bytes([_b(scene_id)]),
        "product_id": _bytes([_b(product_id)]),
        "category": _bytes([_b(category)]),
        "category_index": _ints([category_index]),
        "scene_jpeg": _bytes([scene_jpeg]),
        "full_scene_jpeg": _bytes([full_scene_jpeg]),
        "product_jpeg": _bytes([product_jpeg]),
        "product_box": _floats(product_box),
        "crop_box": _floats(crop_box),
        "other_boxes": _floats([v for box in other_boxes for v in box]),
        "other_categories": _bytes([_b(c) for c in other_categories]),
    }
    return _serialize(feature)


def encode_product(*, product_id: str, category: str, category_index: int, product_jpeg: bytes) -> bytes:
    feature = {
        "product_id": _bytes([_b(product_id)]),
        "category": _bytes([_b(category)]),
        "category_index": _ints([category_index]),
        "product_jpeg": _bytes([product_jpeg]),
    }
    return _serialize(feature)


# ---------------------------------------------------------------- parsing (tf side)
PAIR_FEATURES = {
    "pair_id": tf.io.FixedLenFeature([], tf.int64),
    "scene_id": tf.io.FixedLenFeature([], tf.string),
    "product_id": tf.io.FixedLenFeature([], tf.string),
    "category": tf.io.FixedLenFeature([], tf.string),
    "category_index": tf.io.FixedLenFeature([], tf.int64),
    "scene_jpeg": tf.io.FixedLenFeature([], tf.string),
    "full_scene_jpeg": tf.io.FixedLenFeature([], tf.string),
    "product_jpeg": tf.io.FixedLenFeature([], tf.string),
    "product_box": tf.io.FixedLenFeature([4], tf.float32),
    "crop_box": tf.io.FixedLenFeature([4], tf.float32),
    "other_boxes": tf.io.VarLenFeature(tf.float32),
    "other_categories": tf.io.VarLenFeature(tf.string),
}

PRODUCT_FEATURES = {
    "product_id": tf.io.FixedLenFeature([], tf.string),
    "category": tf.io.FixedLenFeature([], tf.string),
    "category_index": tf.io.FixedLenFeature([], tf.int64),
    "product_jpeg": tf.io.FixedLenFeature([], tf.string),
}


def parse_pair(serialized: tf.Tensor) -> dict:
    """Scalar serialized Example -> dict; other_boxes dense [k, 4] float32, other_categories dense [k]."""
    parsed = tf.io.parse_single_example(serialized, PAIR_FEATURES)
    parsed["other_boxes"] = tf.reshape(tf.sparse.to_dense(parsed["other_boxes"]), [-1, 4])
    parsed["other_categories"] = tf.sparse.to_dense(parsed["other_categories"], default_value=b"")
    return parsed


def parse_product(serialized: tf.Tensor) -> dict:
    return tf.io.parse_single_example(serialized, PRODUCT_FEATURES)


# ---------------------------------------------------------------- writing
def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Write serialized records to `path` atomically (temp name in the same dir, then rename).

    Returns the number of records written. An exception while iterating leaves no file at `path`.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in records:
                writer.write(record)
                count += 1
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return count


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as sorted, indented JSON atomically (same bytes for the same object)."""
    atomic.write_json(path, obj, indent=1)
