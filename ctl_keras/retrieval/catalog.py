"""What a product catalog is: its sources, the per-product keep/skip rule, and the index assembly.

Catalog sources:
- a directory of images laid out as `<dir>/<category name>/<product id>.{jpg,jpeg,png}`;
- a built dataset, `tf_records/NAME` (every split, each product once) or `tf_records/NAME:split`.
A source is split into items (category directories, TFRecord files) that are read independently,
so the Beam pipeline (beam_embed.py) reads them on its workers; every record carries a sort key
(category dir, file name) or (file rank, record number) that restores the source's order, so the
index is the same whatever the runner or worker count. Paths go through tf.io.gfile (gs:// works).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Iterable, Iterator

import numpy as np
import tensorflow as tf

from ctl_keras.data.encoding import looks_like_image
from ctl_keras.retrieval.index import CatalogIndex

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# corrupt_image: valid magic bytes but the product tower cannot decode it (e.g. a truncated JPEG).
# not_a_file: an entry named like an image that is no regular file (a directory x.jpg, a dangling
# symlink, a FIFO or device: never opened for reading, so it cannot block the run).
# read_timeout: a file whose reading took longer than READ_DEADLINE_S (checked between 1 MiB chunks).
SKIP_REASONS = ("not_an_image", "unknown_category", "duplicate_id", "corrupt_image", "not_a_file", "read_timeout")
READ_DEADLINE_S = 30.0
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "images" | "tfrecords"
    root: str
    items: tuple[str, ...]  # category directory names, or TFRecord file paths in read order

    @property
    def dedup_silently(self) -> bool:
        """A product of a built dataset occurs once per split it is in: not a user error, not counted."""
        return self.kind == "tfrecords"


def _strip(name: str) -> str:
    return name.rstrip("/")


def resolve_source(products: str, categories) -> Source:
    """List a catalog source (directory names only, no image bytes); clear errors for bad ones."""
    if tf.io.gfile.isdir(products) and not tf.io.gfile.glob(f"{products}/*.tfrecord"):
        subdirs = sorted(_strip(d) for d in tf.io.gfile.listdir(products) if tf.io.gfile.isdir(f"{products}/{_strip(d)}"))
        unknown = [d for d in subdirs if d not in categories]
        if unknown:
            raise ValueError(f"{products}: sub-directories {', '.join(unknown)} are not categories of the model; "
                             f"valid: {', '.join(categories)}")
        return Source("images", products, tuple(subdirs))
    from ctl_keras.data import tfrecords

    data_dir, _, split = products.partition(":")
    if not tf.io.gfile.isdir(data_dir):
        raise FileNotFoundError(f"--products={products} is neither an image directory nor a tf_records/NAME[:split]")
    if split and split not in tfrecords.SPLITS:
        raise ValueError(f"unknown split {split!r} in --products={products}; "
                         f"expected one of {', '.join(tfrecords.SPLITS)}")
    files = sorted(tf.io.gfile.glob(f"{data_dir}/products-{split or '*'}-*.tfrecord"))
    if not files:
        raise FileNotFoundError(f"no product TFRecords for {products} (looked for products-*.tfrecord in {data_dir}); "
                                "build the dataset with `ctl build`")
    return Source("tfrecords", data_dir, tuple(files))


def absolute_source(products: str) -> str:
    """`products` with its local path made absolute (realpath), as the index records it: the products'
    images must resolve (thumbnails) whatever the directory a server or a later update starts from."""
    if "://" in products:
        return products
    if os.path.isdir(products):
        return os.path.realpath(products)
    data_dir, colon, split = products.partition(":")  # resolve_source's reading of NAME:split
    return os.path.realpath(data_dir) + colon + split


def read_regular_file(path: str, deadline_s: float = READ_DEADLINE_S):
    """The bytes of a local regular file, or the skip reason ("not_a_file", "read_timeout") as a str.

    Opened with O_NONBLOCK and checked with fstat on the open descriptor, so a FIFO or device named
    x.jpg is never read (and a file swapped for one after a check cannot slip through); the deadline
    is checked between chunks (a read blocked inside the kernel, on a hung network mount, is not
    interrupted)."""
    import stat
    import time

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return "not_a_file"  # dangling symlink, vanished, a directory on some systems
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a directory opens read-only too
        os.close(fd)
        return "not_a_file"
    with os.fdopen(fd, "rb", buffering=0) as f:
        start, chunks = time.monotonic(), []
        while chunk := f.read(_CHUNK):
            chunks.append(chunk)
            if time.monotonic() - start > deadline_s:
                return "read_timeout"
        return b"".join(chunks)


def _read_image(path: str):
    if "://" not in path:
        return read_regular_file(path)
    if tf.io.gfile.isdir(path):
        return "not_a_file"
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def read_item(kind: str, root: str, rank: int, item: str) -> Iterator[tuple[str, str, str, bytes | str]]:
    """(sort key as JSON, product_id, category name, image bytes) of one item of a source; in place of
    the bytes, a skip reason (str) for an entry that is no readable regular file."""
    if kind == "images":
        for name in sorted(_strip(n) for n in tf.io.gfile.listdir(f"{root}/{item}")):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                yield json.dumps([item, name]), stem, item, _read_image(f"{root}/{item}/{name}")
        return
    from ctl_keras.data import tfrecords

    for i, example in enumerate(tf.data.TFRecordDataset(item).map(tfrecords.parse_product)):
        yield (json.dumps([rank, i]), example["product_id"].numpy().decode(), example["category"].numpy().decode(),
               example["product_jpeg"].numpy())


def choose(records: Iterable[tuple], categories, dedup_silently: bool):
    """All records of one product id -> (the record to embed or None, [skip reasons]).

    The rule `recommend index` always had: in source order, skip non-images and unknown categories,
    keep the first remaining record and count the others as duplicate ids. In a built dataset only
    the first occurrence is looked at (the others are the same product in other splits).
    """
    records = sorted(records, key=lambda r: json.loads(r[0]))
    if dedup_silently:
        records = records[:1]
    valid, skipped = [], []
    for record in records:
        if isinstance(record[3], str):
            skipped.append(record[3])  # not_a_file / read_timeout
        elif not looks_like_image(record[3]):
            skipped.append("not_an_image")
        elif record[2] not in categories:
            skipped.append("unknown_category")
        else:
            valid.append(record)
    skipped += ["duplicate_id"] * max(0, len(valid) - 1)
    return (valid[0] if valid else None), skipped


def iter_products(products: str, categories) -> Iterator[tuple[str, str, bytes]]:
    """(product_id, category name, image bytes) in source order, read in this process (tests, benchmarks).
    A bad source is reported here, before iterating."""
    return _iter_source(resolve_source(products, categories))


def _iter_source(source: Source) -> Iterator[tuple[str, str, bytes]]:
    seen = set()
    for rank, item in enumerate(source.items):
        for _, product_id, category, image in read_item(source.kind, source.root, rank, item):
            if isinstance(image, str):
                continue  # not a readable regular file
            if not (source.dedup_silently and product_id in seen):
                seen.add(product_id)
                yield product_id, category, image


def assemble(rows, skipped: collections.Counter, categories, meta: dict, products: str, *,
             allow_empty: bool = False, unchanged=()) -> CatalogIndex:
    """rows: (sort key JSON, product_id, category id, embedding, image sha256) in any order -> the index
    in source order. `unchanged`: ids an update found already embedded (meta["unchanged"], sorted).
    Every product's source is meta["sources"][0] (source_ids 0)."""
    if not rows and not allow_empty:
        raise ValueError(f"no product images found in {products} (skipped: {dict(skipped)})")
    rows = sorted(rows, key=lambda r: json.loads(r[0]))
    dim = len(rows[0][3]) if rows else 0
    return CatalogIndex(np.array([r[1] for r in rows], dtype=str), np.array([r[2] for r in rows], np.int32),
                        np.stack([r[3] for r in rows]).astype(np.float32) if rows else np.zeros((0, dim), np.float32),
                        tuple(categories),
                        dict(meta, skipped={reason: int(skipped.get(reason, 0)) for reason in SKIP_REASONS},
                             **({"unchanged": sorted(unchanged)} if unchanged else {})),
                        image_sha256=np.array([r[4] for r in rows], dtype=str),
                        source_ids=np.zeros(len(rows), np.int32))
