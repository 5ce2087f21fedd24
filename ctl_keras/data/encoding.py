"""TFRecord file names and Example encoding for pairs and products, without TensorFlow.

Beam workers encode records without importing TensorFlow (seconds per worker process). The bytes
are exactly `tf.train.Example(...).SerializeToString(deterministic=True)` (tests compare them):
the Example wire format is TensorFlow's stable on-disk format, and small enough to write by hand.
`tfrecords.py` re-exports everything here next to the tf-side parsing.
"""

from __future__ import annotations

import struct
from typing import Sequence

from ctl_keras.config import SPLITS  # noqa: F401 (re-exported with the file names)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


# ---------------------------------------------------------------- file names
def pair_shard_name(split: str, i: int, n: int) -> str:
    return f"pairs-{split}-{i:05d}-of-{n:05d}.tfrecord"


def product_file_name(split: str, category_index: int) -> str:
    return f"products-{split}-{category_index:02d}.tfrecord"


def questions_file_name(split: str) -> str:
    return f"questions-{split}.json"


# ---------------------------------------------------------------- protobuf wire format
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values: ten-byte two's complement, as protobuf writes them
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes(values: Sequence[bytes]) -> bytes:  # Feature.bytes_list = 1, BytesList.value = 1
    return _field(1, b"".join(_field(1, v) for v in values))


def _floats(values: Sequence[float]) -> bytes:  # Feature.float_list = 2, packed FloatList.value = 1
    packed = struct.pack(f"<{len(values)}f", *values)
    return _field(2, _field(1, packed) if values else b"")


def _ints(values: Sequence[int]) -> bytes:  # Feature.int64_list = 3, packed Int64List.value = 1
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def _example(features: dict[str, bytes]) -> bytes:
    """Example.features = 1 -> Features.feature = 1: map entries (key = 1, value = 2) in the order
    protobuf's deterministic serialization uses: by key bytes, a key before any key it is a prefix of
    ("category_index" before "category"; a 0xff sentinel, never in UTF-8, gives that order)."""
    keys = sorted(features, key=lambda k: k.encode("utf-8") + b"\xff")
    entries = b"".join(_field(1, _field(1, key.encode("utf-8")) + _field(2, features[key])) for key in keys)
    return _field(1, entries)


def _b(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


# ---------------------------------------------------------------- records
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
    return _example({
        "pair_id": _ints([pair_id]),
        "scene_id": _bytes([_b(scene_id)]),
        "product_id": _bytes([_b(product_id)]),
        "category": _bytes([_b(category)]),
        "category_index": _ints([category_index]),
        "scene_jpeg": _bytes([scene_jpeg]),
        "full_scene_jpeg": _bytes([full_scene_jpeg]),
        "product_jpeg": _bytes([product_jpeg]),
        "product_box": _floats([float(v) for v in product_box]),
        "crop_box": _floats([float(v) for v in crop_box]),
        "other_boxes": _floats([float(v) for box in other_boxes for v in box]),
        "other_categories": _bytes([_b(c) for c in other_categories]),
    })


def encode_product(*, product_id: str, category: str, category_index: int, product_jpeg: bytes) -> bytes:
    return _example({
        "product_id": _bytes([_b(product_id)]),
        "category": _bytes([_b(category)]),
        "category_index": _ints([category_index]),
        "product_jpeg": _bytes([product_jpeg]),
    })


# The first bytes of the images every reader accepts (JPEG, PNG): a cheap check before decoding.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG")


def looks_like_image(data: bytes) -> bool:
    return data.startswith(IMAGE_MAGIC)
