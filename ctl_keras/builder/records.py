"""TFRecord framing without TensorFlow (Beam workers need not import TF to write shards).

Each record: uint64 length, masked CRC32C of the length, the data, masked CRC32C of the data, all
little-endian, exactly as `tf.io.TFRecordWriter` writes an uncompressed file.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterable

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def write_records(f: BinaryIO, records: Iterable[bytes]) -> int:
    count = 0
    for record in records:
        length = struct.pack("<Q", len(record))
        f.write(length + _masked_crc(length) + record + _masked_crc(record))
        count += 1
    return count
