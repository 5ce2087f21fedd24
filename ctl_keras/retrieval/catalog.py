"""Embed a product catalog with an exported product tower into a CatalogIndex.

Catalog sources:
- a directory of images laid out as `<dir>/<category name>/<product id>.{jpg,jpeg,png}`;
- a built dataset, `tf_records/NAME` (every split, each product once) or `tf_records/NAME:split`.
The embeddings come from the SavedModel itself (`serving_default`, image bytes in), so the index
holds exactly what a served product tower returns.
"""

from __future__ import annotations

import glob
import os
from typing import Iterator

import numpy as np
import tensorflow as tf
from absl import logging

from ctl_keras.retrieval.index import CatalogIndex
from ctl_keras.serving.exporter import PRODUCT, read_meta, resolve_version_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG")


def _from_image_dir(root: str, categories) -> Iterator[tuple[str, str, bytes]]:
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    unknown = [d for d in subdirs if d not in categories]
    if unknown:
        raise ValueError(f"{root}: sub-directories {', '.join(unknown)} are not categories of the model; "
                         f"valid: {', '.join(categories)}")
    for category in subdirs:
        for name in sorted(os.listdir(os.path.join(root, category))):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                with open(os.path.join(root, category, name), "rb") as f:
                    yield stem, category, f.read()


def _from_tfrecords(spec: str) -> Iterator[tuple[str, str, bytes]]:
    from ctl_keras.data import tfrecords

    data_dir, _, split = spec.partition(":")
    if split and split not in tfrecords.SPLITS:
        raise ValueError(f"unknown split {split!r} in --products={spec}; expected one of {', '.join(tfrecords.SPLITS)}")
    files = sorted(glob.glob(os.path.join(data_dir, f"products-{split or '*'}-*.tfrecord")))
    if not files:
        raise FileNotFoundError(f"no product TFRecords for {spec} (looked for products-*.tfrecord in {data_dir}); "
                                "build the dataset with `python -m ctl_keras.build_dataset`")
    seen = set()
    for example in tf.data.TFRecordDataset(files).map(tfrecords.parse_product):
        product_id = example["product_id"].numpy().decode()
        if product_id not in seen:  # a product can occur in several splits
            seen.add(product_id)
            yield product_id, example["category"].numpy().decode(), example["product_jpeg"].numpy()


def iter_products(products: str, categories) -> Iterator[tuple[str, str, bytes]]:
    """(product_id, category name, image bytes) from a directory of images or tf_records/NAME[:split]."""
    if os.path.isdir(products) and not glob.glob(os.path.join(products, "*.tfrecord")):
        return _from_image_dir(products, categories)
    if os.path.isdir(products.partition(":")[0]):
        return _from_tfrecords(products)
    raise FileNotFoundError(f"--products={products} is neither an image directory nor a tf_records/NAME[:split]")


def build_index(export_dir: str, products: str, *, version: int | None = None, batch_size: int = 32) -> CatalogIndex:
    """Embed every product with `<export_dir>/product_tower/<version or latest>`."""
    version_dir = resolve_version_dir(export_dir, PRODUCT, version)
    meta = read_meta(version_dir)
    categories = tuple(meta["categories"])
    embed = tf.saved_model.load(version_dir).signatures["serving_default"]
    ids, cats, chunks, batch = [], [], [], []
    skipped = {"not_an_image": 0, "unknown_category": 0, "duplicate_id": 0}
    seen = set()

    def flush():
        if batch:
            out = embed(image_bytes=tf.constant(batch, tf.string))["product_embedding"]
            chunks.append(out.numpy())
            batch.clear()
            logging.log_every_n(logging.INFO, "embedded %d products", 20, len(ids))

    for product_id, category, image in iter_products(products, categories):
        if not image.startswith(_MAGIC):
            skipped["not_an_image"] += 1
            continue
        if category not in categories:
            skipped["unknown_category"] += 1
            continue
        if product_id in seen:
            skipped["duplicate_id"] += 1
            continue
        seen.add(product_id)
        ids.append(product_id)
        cats.append(categories.index(category))
        batch.append(image)
        if len(batch) == batch_size:
            flush()
    flush()
    if not ids:
        raise ValueError(f"no product images found in {products} (skipped: {skipped})")
    embeddings = np.concatenate(chunks).astype(np.float32)
    return CatalogIndex(np.array(ids), np.array(cats, np.int32), embeddings, categories, {
        "tower_version": meta["version"], "model_fingerprint": meta["model_fingerprint"],
        "export_dir": os.path.abspath(export_dir), "source": products, "skipped": skipped})
