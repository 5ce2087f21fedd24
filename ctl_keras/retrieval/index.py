"""A catalog index: product ids, categories and product embeddings f_p, saved as `<stem>.npz` + `<stem>.json`
(+ `<stem>.ann.npz`, the per-category approximate index, when built with `--approximate`).

The .npz holds the arrays; the .json holds the metadata (which exported product tower made the
embeddings, embedding size, category names) and the sha256 of the .npz. Both are written under
temporary names and renamed, the .json last, so a reader never trusts a half-written or mismatched
pair: `load_index` checks the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

from ctl_keras.atomic import atomic_write

INDEX_FORMAT = 1


@dataclasses.dataclass
class CatalogIndex:
    product_ids: np.ndarray  # [N] str
    category_ids: np.ndarray  # [N] int32, index into `categories`
    embeddings: np.ndarray  # [N, d] float32, unit rows
    categories: tuple[str, ...]
    # tower_version, model_fingerprint, export_dir, source, ...
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # {category id: approximate searcher} when the index was built with --approximate (ann.py);
    # meta["search"] then records the backend and its parameters.
    ann: dict[int, Any] | None = None

    def __post_init__(self):
        self.product_ids = np.asarray(self.product_ids).astype(str)
        self.category_ids = np.asarray(self.category_ids, dtype=np.int32)
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        self.categories = tuple(self.categories)
        n = len(self.product_ids)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n or self.category_ids.shape != (n,):
            raise ValueError(
                f"index arrays disagree: {n} ids, category_ids {self.category_ids.shape}, "
                f"embeddings {self.embeddings.shape}"
            )
        if n and (self.category_ids.min() < 0 or self.category_ids.max() >= len(self.categories)):
            raise ValueError(f"category ids outside 0..{len(self.categories) - 1}")

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.product_ids)

    def category_id(self, name: str) -> int:
        """Category name -> id; a one-line ValueError listing the valid names otherwise."""
        if name not in self.categories:
            raise ValueError(f"unknown category {name!r}; valid: {', '.join(self.categories)}")
        return self.categories.index(name)


def index_paths(path: str | os.PathLike) -> tuple[str, str]:
    """`foo`, `foo.npz` or `foo.json` -> (`foo.npz`, `foo.json`)."""
    stem = os.fspath(path)
    for ext in (".npz", ".json"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return stem + ".npz", stem + ".json"


def ann_path(path: str | os.PathLike) -> str:
    return index_paths(path)[0][: -len(".npz")] + ".ann.npz"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_index(index: CatalogIndex, path: str | os.PathLike) -> tuple[str, str]:
    """Write the index atomically; returns (npz path, json path)."""
    npz_path, json_path = index_paths(path)
    os.makedirs(os.path.dirname(os.path.abspath(npz_path)), exist_ok=True)
    tmp_npz, tmp_json = f"{npz_path}.tmp-{os.getpid()}", f"{json_path}.tmp-{os.getpid()}"
    try:
        # np.savez appends .npz to names without it; an open file object avoids that.
        with open(tmp_npz, "wb") as f:
            np.savez(f, product_ids=index.product_ids, category_ids=index.category_ids,
                     embeddings=index.embeddings)
        meta = dict(index.meta, format=INDEX_FORMAT, categories=list(index.categories),
                    num_products=len(index), embedding_dim=index.embedding_dim,
                    npz_sha256=_sha256(tmp_npz))
        meta.pop("search", None)
        if index.ann is not None:
            from ctl_keras.retrieval.ann import write_ann

            atomic_write(ann_path(path), lambda tmp: write_ann(tmp, index.ann))
            meta["search"] = dict(index.meta["search"], ann_sha256=_sha256(ann_path(path)))
        with open(tmp_json, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        os.replace(tmp_npz, npz_path)
        os.replace(tmp_json, json_path)
        if index.ann is None and os.path.exists(ann_path(path)):
            os.remove(ann_path(path))  # an approximate index of a previous build: no longer described
    finally:
        for tmp in (tmp_npz, tmp_json):
            if os.path.exists(tmp):
                os.remove(tmp)
    return npz_path, json_path


def load_index(path: str | os.PathLike) -> CatalogIndex:
    """Read an index written by `save_index`; clear errors when missing, torn or of another format."""
    npz_path, json_path = index_paths(path)
    for p in (npz_path, json_path):
        if not os.path.exists(p):
            raise FileNotFoundError(f"index file {p} not found; build it with `python -m ctl_keras.recommend index`")
    with open(json_path) as f:
        meta = json.load(f)
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{json_path}: index format {meta.get('format')!r}, expected {INDEX_FORMAT}; rebuild it")
    if meta.get("npz_sha256") != _sha256(npz_path):
        raise ValueError(f"{npz_path} does not match {json_path} (interrupted write?); rebuild the index")
    with np.load(npz_path) as arrays:
        index = CatalogIndex(arrays["product_ids"], arrays["category_ids"], arrays["embeddings"],
                             tuple(meta["categories"]), meta)
    if "search" in meta:
        from ctl_keras.retrieval.ann import read_ann

        ann_file = ann_path(path)
        if not os.path.exists(ann_file) or meta["search"].get("ann_sha256") != _sha256(ann_file):
            raise ValueError(f"{ann_file} is missing or does not match {json_path}; rebuild the index")
        index.ann = read_ann(ann_file, meta["search"], index.categories)
    if index.embedding_dim != meta["embedding_dim"]:
        raise ValueError(f"{npz_path}: embeddings are {index.embedding_dim}-d but the json says {meta['embedding_dim']}")
    return index


def check_compatible(index: CatalogIndex, tower_meta: dict[str, Any], what: str = "scene tower",
                     check_version: bool = True) -> None:
    """Refuse an index whose embedding size, tower version or model differs from the tower's."""
    problems = []
    if index.embedding_dim != tower_meta.get("embedding_dim"):
        problems.append(f"embedding size {index.embedding_dim} vs {tower_meta.get('embedding_dim')}")
    if check_version and index.meta.get("tower_version") != tower_meta.get("version"):
        problems.append(f"tower version {index.meta['tower_version']} vs {tower_meta.get('version')}")
    fp = index.meta.get("model_fingerprint")
    if fp and tower_meta.get("model_fingerprint") and fp != tower_meta["model_fingerprint"]:
        problems.append("model weights differ")
    if list(index.categories) != list(tower_meta.get("categories", index.categories)):
        problems.append("category lists differ")
    if problems:
        raise ValueError(
            f"index does not match the {what} ({'; '.join(problems)}); rebuild it with "
            "`python -m ctl_keras.recommend index` from the same export"
        )
