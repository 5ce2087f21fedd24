"""A built dataset directory (schema: tf_records/README.md): its manifest, file layout and questions.

Lookup only, no tf.data: `data/pipeline.py` (triplets, eval pairs, products) and every module that only
needs the manifest or the questions (training, evaluation, analysis, fingerprint, benchmarks) read the
directory through here, so the file layout and its errors live in one place.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from ctl_keras.config import SPLITS
from ctl_keras.data import tfrecords

__all__ = ["read_manifest", "checked_manifest", "split_info", "pair_files", "product_files", "product_paths",
           "load_questions"]


def _rebuild(data_dir, dataset: str | None = None) -> str:
    return f"rebuild with `ctl build --dataset={dataset or 'NAME'} --out={data_dir}`"


def read_manifest(data_dir, dataset: str | None = None) -> dict:
    """The manifest of a built dataset directory, checked for presence and schema version."""
    data_dir = os.fspath(data_dir)
    path = os.path.join(data_dir, tfrecords.MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        name = dataset or "NAME"
        raise FileNotFoundError(
            f"no manifest.json in {data_dir}: build it with "
            f"`ctl build --dataset={name} --out={data_dir}`")
    try:
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    version = manifest.get("schema_version")
    if version != tfrecords.SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {version!r}, this code reads "
                         f"{tfrecords.SCHEMA_VERSION}: rebuild the dataset")
    return manifest


def split_info(manifest: dict, split: str, data_dir) -> dict:
    """The manifest's entry for `split`; a clear error for an unknown or empty split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    info = manifest.get("splits", {}).get(split)
    if not info or not info.get("pairs"):
        raise ValueError(f"split {split!r} has zero pairs in {data_dir}")
    return info


def _check_categories(manifest: dict, config, data_dir) -> None:
    # Category ids index config.categories; a different list would silently mislabel everything.
    if tuple(manifest.get("categories", ())) != tuple(config.categories):
        raise ValueError(f"categories in {data_dir}/manifest.json {manifest.get('categories')} differ "
                         f"from config {config.dataset!r} {list(config.categories)}")


def checked_manifest(config, split: str, data_dir) -> dict:
    """read_manifest + the config's categories + a non-empty `split`."""
    manifest = read_manifest(data_dir, config.dataset)
    _check_categories(manifest, config, data_dir)
    split_info(manifest, split, data_dir)
    return manifest


def _listed(info: dict, key: str, split: str, data_dir, manifest: dict):
    # Every build of this schema lists its files; a manifest without the list predates that.
    if key not in info:
        raise ValueError(f"{data_dir}/manifest.json lists no {key} for split {split!r} (an older build): "
                         + _rebuild(data_dir, manifest.get("dataset")))
    return info[key]


def _existing(data_dir, name: str) -> str:
    path = os.path.join(os.fspath(data_dir), name)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is listed in the manifest but missing: rebuild the dataset")
    return path


def pair_files(data_dir, split: str) -> list[str]:
    """Paths of the split's pair shards, in manifest order."""
    manifest = read_manifest(data_dir)
    info = split_info(manifest, split, data_dir)
    names = _listed(info, "pair_shards", split, data_dir, manifest)
    if not names:
        raise FileNotFoundError(f"no pair shards of split {split!r} in {data_dir}")
    return [_existing(data_dir, n) for n in names]


def product_files(data_dir, manifest: dict, split: str) -> list[tuple[int, str, int]]:
    """(category_index, path, count) of the split's non-empty product files, in category order."""
    counts = _listed(manifest["splits"][split], "products_per_category", split, data_dir, manifest)
    return [(c, _existing(data_dir, tfrecords.product_file_name(split, c)), counts[name])
            for c, name in enumerate(manifest["categories"]) if counts.get(name, 0) > 0]


def product_paths(data_dir, split: str, config=None) -> list[str]:
    """Paths of the split's non-empty product files (checked against `config`'s categories if given)."""
    manifest = checked_manifest(config, split, data_dir) if config is not None else read_manifest(data_dir)
    split_info(manifest, split, data_dir)
    files = [path for _, path, _ in product_files(data_dir, manifest, split)]
    if not files:
        raise ValueError(f"split {split!r} has zero products in {data_dir}")
    return files


def load_questions(data_dir, split: str) -> list[dict]:
    """The fixed binary questions of val/test written at build time."""
    split_info(read_manifest(data_dir), split, data_dir)
    if split == "train":
        raise ValueError("split 'train' has no questions: they exist for val and test only")
    path = os.path.join(os.fspath(data_dir), tfrecords.questions_file_name(split))
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: rebuild the dataset")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)
