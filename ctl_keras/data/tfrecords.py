"""TFRecord encode/parse for CTL pairs and products (schema: tf_records/README.md) and file names.

Names and encoding live in data/encoding.py (no TensorFlow: the builder's Beam workers never import
it; the same bytes as tf.train.Example) and are re-exported here; parsing is tf-side
(`tf.io.parse_single_example`) for the tf.data pipeline.
"""

from __future__ import annotations

import os
from typing import Iterable

import tensorflow as tf

from ctl_keras.utils import atomic
from ctl_keras.data.encoding import (  # noqa: F401 (re-exported)
    MANIFEST_NAME, SCHEMA_VERSION, SPLITS, encode_pair, encode_product, pair_shard_name, product_file_name,
    questions_file_name)


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
    """Write serialized records to `path` atomically (ctl_keras/utils/atomic.py).

    Returns the number of records written. An exception while iterating leaves no file at `path`.
    """
    count = 0

    def write(tmp: str) -> None:
        nonlocal count
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in records:
                writer.write(record)
                count += 1

    atomic.atomic_write(path, write)
    return count

