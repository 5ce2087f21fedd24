"""A catalog index: product ids, categories and product embeddings f_p, saved as `<stem>.npz` + `<stem>.json`
(+ the search backend's own files, e.g. `<stem>.ann.npz`, when built with `--backend=ivf|hnsw|ivf_sq8`).

The .npz holds the arrays; the .json holds the metadata (which exported product tower made the
embeddings, embedding size, category names, the search backend's entry) and the sha256 of the .npz.
Both are written under temporary names and renamed, the .json last, so a reader never trusts a
half-written or mismatched pair: `load_index` checks the hash. This module knows the backends only
through the contract's save()/commit() (retrieval/backend.py): it imports none of them, so the
backends may build on it without an import cycle.

A file at the index's names that is not an index of ours (the user's `notes.json` beside
`--index=notes`) is never replaced or deleted: save_index refuses it in one line.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
from typing import Any

import numpy as np

from ctl_keras.utils.atomic import staged_files

INDEX_FORMAT = 1


@dataclasses.dataclass
class CatalogIndex:
    product_ids: np.ndarray  # [N] str
    category_ids: np.ndarray  # [N] int32, index into `categories`
    embeddings: np.ndarray  # [N, d] float32, unit rows
    categories: tuple[str, ...]
    # tower_version, model_fingerprint, export_dir, source, ...
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # [N] str: sha256 of each product's image bytes, so `recommend index --update` can tell a changed
    # image from an unchanged one (None in indexes built before --update existed).
    image_sha256: np.ndarray | None = None
    # [N] int32: each product's source (where its image is: the thumbnails) as an index into
    # meta["sources"], absolute paths; -1 unknown. None in indexes built before sources were recorded.
    source_ids: np.ndarray | None = None

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
        if self.image_sha256 is not None:
            self.image_sha256 = np.asarray(self.image_sha256).astype(str)
            if self.image_sha256.shape != (n,):
                raise ValueError(f"index arrays disagree: {n} ids, image_sha256 {self.image_sha256.shape}")
        if self.source_ids is not None:
            self.source_ids = np.asarray(self.source_ids, dtype=np.int32)
            if self.source_ids.shape != (n,):
                raise ValueError(f"index arrays disagree: {n} ids, source_ids {self.source_ids.shape}")
        if n and (self.category_ids.min() < 0 or self.category_ids.max() >= len(self.categories)):
            raise ValueError(f"category ids outside 0..{len(self.categories) - 1}")
        self.path: str | None = None  # the json it was loaded from (load_index)

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


def index_stem(path: str | os.PathLike) -> str:
    """`foo`, `foo.npz` or `foo.json` -> `foo`."""
    stem = os.fspath(path)
    for ext in (".npz", ".json"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return stem


def index_paths(path: str | os.PathLike) -> tuple[str, str]:
    """`foo`, `foo.npz` or `foo.json` -> (`foo.npz`, `foo.json`)."""
    stem = index_stem(path)
    return stem + ".npz", stem + ".json"


def ann_path(path: str | os.PathLike, generation: int = 1) -> str:
    return data_path(path, generation)[: -len(".npz")] + ".ann.npz"


def data_path(path: str | os.PathLike, generation: int = 1) -> str:
    """The arrays of one index generation: STEM.npz for the first (a fresh build), STEM.g<N>.npz after
    N-1 updates. The json names its generation's files, so a reader that read the previous json
    still finds the previous files (save_index keeps them one generation longer)."""
    npz = index_paths(path)[0]
    return npz if generation == 1 else f"{npz[: -len('.npz')]}.g{generation}.npz"


def _generation_files(path, generation: int) -> set[str]:
    return {data_path(path, generation), ann_path(path, generation)}


def _stale_files(path, keep: set[str]) -> list[str]:
    """Data files of this stem's generations other than `keep` (never another stem's files)."""
    stem = index_stem(path)
    candidates = [stem + ".npz", stem + ".ann.npz"] + glob.glob(glob.escape(stem) + ".g[0-9]*.npz")
    return [f for f in candidates if os.path.exists(f) and f not in keep
            and re.fullmatch(r"(\.g\d+)?(\.ann)?\.npz", f[len(stem):]) and _is_our_npz(f)]


def _is_our_npz(path: str) -> bool:
    """An npz this module or a backend wrote: the index arrays, or only per-category entries c<N>."""
    try:
        with np.load(path) as f:
            names = set(f.files)
    except (OSError, ValueError, EOFError):
        return False
    return {"product_ids", "category_ids", "embeddings"} <= names or all(re.fullmatch(r"c\d+", n) for n in names)


def _is_our_json(path: str) -> bool:
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and "npz_sha256" in meta and "num_products" in meta and "categories" in meta


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse (one line) when STEM.json or STEM.npz exists and is not an index of ours."""
    npz_path, json_path = index_paths(path)
    for file, ours in ((json_path, _is_our_json), (npz_path, _is_our_npz)):
        if os.path.lexists(file) and (not os.path.isfile(file) or not ours(file)):
            raise ValueError(f"{file} exists and is not a ctl_keras catalog index; refusing to replace it "
                             "(move it away or choose another --index)")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_index(index: CatalogIndex, path: str | os.PathLike, search=None) -> tuple[str, str]:
    """Write the index atomically; returns (npz path, json path). search: a backend (backend.py) whose
    save() writes its files first and returns the json's "search" entry; None: exact search only.

    The generation is index.meta["generation"] (1 unless written by `recommend index --update`). Its
    arrays go to data_path(generation) (+ the backend's files), the json last: the json's rename is the
    switch; then search.commit() runs. Afterwards the files of every other generation but the one the
    replaced json named are deleted.
    """
    npz_path, json_path = index_paths(path)
    check_replaceable(path)
    generation = int(index.meta.get("generation", 1))
    data = data_path(path, generation)
    previous, previous_search = _previous(json_path)
    os.makedirs(os.path.dirname(os.path.abspath(npz_path)), exist_ok=True)
    # Both written under temporary names, then renamed: the arrays first, the json (the switch) last.
    with staged_files(data, json_path) as (tmp_npz, tmp_json):
        arrays = dict(product_ids=index.product_ids, category_ids=index.category_ids, embeddings=index.embeddings)
        if index.image_sha256 is not None:
            arrays["image_sha256"] = index.image_sha256
        if index.source_ids is not None:
            arrays["source_ids"] = index.source_ids
        # np.savez appends .npz to names without it; an open file object avoids that.
        with open(tmp_npz, "wb") as f:
            np.savez(f, **arrays)
        meta = dict(index.meta, format=INDEX_FORMAT, categories=list(index.categories),
                    num_products=len(index), embedding_dim=index.embedding_dim,
                    npz_sha256=_sha256(tmp_npz), generation=generation, npz_file=os.path.basename(data))
        meta.pop("search", None)
        if search is not None:
            meta["search"] = search.save(data[: -len(".npz")])
        with open(tmp_json, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
    if search is not None:
        search.commit(previous_search)
    directory = os.path.dirname(os.path.abspath(json_path))
    keep = {data} | {os.path.join(directory, f) for f in (search.files(meta["search"]) if search else ())}
    if previous is not None and previous != generation:
        keep |= _generation_files(path, previous)  # a reader may have read the replaced json just now
    for stale in _stale_files(path, keep):
        os.remove(stale)
    index.meta = dict(index.meta, **{k: meta[k] for k in ("generation", "npz_file")})
    if "search" in meta:
        index.meta["search"] = meta["search"]
    index.path = json_path
    return data, json_path


def _previous(json_path: str) -> tuple[int | None, dict | None]:
    """(generation, search entry) of the json being replaced, if any."""
    try:
        with open(json_path) as f:
            meta = json.load(f)
        return int(meta.get("generation", 1)), meta.get("search")
    except (OSError, ValueError, AttributeError):
        return None, None


def load_index(path: str | os.PathLike) -> CatalogIndex:
    """Read an index written by `save_index`; clear errors when missing, torn or of another format."""
    npz_path, json_path = index_paths(path)
    if not os.path.exists(json_path):
        missing = npz_path if not os.path.exists(npz_path) else json_path
        raise FileNotFoundError(f"index file {missing} not found; build it with `ctl recommend index`")
    with open(json_path) as f:
        meta = json.load(f)
    # The json names its generation's arrays (indexes written before generations: STEM.npz).
    npz_path = os.path.join(os.path.dirname(os.path.abspath(json_path)), meta.get("npz_file", os.path.basename(npz_path)))
    if not os.path.exists(npz_path):
        raise FileNotFoundError(f"index file {npz_path} not found; build it with `ctl recommend index`")
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{json_path}: index format {meta.get('format')!r}, expected {INDEX_FORMAT}; rebuild it")
    if meta.get("npz_sha256") != _sha256(npz_path):
        raise ValueError(f"{npz_path} does not match {json_path} (interrupted write?); rebuild the index")
    with np.load(npz_path) as arrays:
        optional = {name: arrays[name] if name in arrays.files else None for name in ("image_sha256", "source_ids")}
        index = CatalogIndex(arrays["product_ids"], arrays["category_ids"], arrays["embeddings"],
                             tuple(meta["categories"]), meta, **optional)
    index.path = os.path.abspath(json_path)
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
            "`ctl recommend index` from the same export"
        )
