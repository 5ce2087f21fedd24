"""Per-category search over a catalog index through one backend (the contract in backend.py).

    backend = ctl_keras.retrieval.search.load("export/demo/catalog")     # the backend the index holds
    ids, d_star = backend.search(queries, "shoes", 10)                   # [B, k] str, [B, k] float32

`load(stem, backend=None)` is the public entry point (`open_backend(index, backend)` for a loaded
index): the SearchBackend itself, no wrapper between a caller and it, over the index with the backend its
json records (exact numpy for an index built without one). An exact backend (numpy, tf, faiss) may be asked of any index (the embeddings are
always in the .npz: exact is the ground truth, not another index); an indexed one only of an index
built with it. A mismatch, or backend state that is missing or incomplete, is one line naming the
rebuild command.
"""

from __future__ import annotations

import os

import numpy as np

from ctl_keras.retrieval.backend import EXACT_BACKENDS, IncompleteBackend, SearchBackend, backend_class, rebuild_command
from ctl_keras.retrieval.index import CatalogIndex, index_stem, load_index


def held_backend(index: CatalogIndex) -> str:
    return index.meta.get("search", {}).get("backend", "numpy")


def open_backend(index: CatalogIndex, backend: str | None = None, resume: bool = False) -> SearchBackend:
    """The backend `backend` (default: the one the index holds) over a loaded index. resume: for an
    update, which may finish a half-applied earlier one."""
    held = held_backend(index)
    name = backend or held
    cls = backend_class(name)  # unknown name -> one line listing the valid ones
    stem = index_stem(index.path) if index.path else "STEM"
    if name in EXACT_BACKENDS:
        return cls.build(index)
    if name != held:
        raise ValueError(f"index {stem} holds the {held} backend, not {name}; rebuild it with "
                         f"`{rebuild_command(index.meta, stem, name)}` (or search it exactly: --backend=faiss)")
    if index.path is None:
        raise ValueError(f"backend {name!r} needs an index saved with it; build it with `recommend index --backend={name}`")
    try:
        return cls.load(index, index.meta["search"], os.path.dirname(index.path), verify=not resume)
    except IncompleteBackend as err:
        raise ValueError(f"the {name} part of index {stem} is incomplete ({err}); rebuild it with "
                         f"`{rebuild_command(index.meta, stem, name)}`") from None


def ranked(backend: SearchBackend, queries: np.ndarray, category: str, k: int) -> list[list[dict]]:
    """One `recommend look --json` list per query row: [{"product_id", "d_star"}] by d* ascending, from one
    search call (one matmul for the exact backends). The CLI, the Python API and the service all rank here."""
    ids, d_star = backend.search(queries, category, k)
    return [[{"product_id": str(p), "d_star": float(d)} for p, d in zip(row_ids, row_d)]
            for row_ids, row_d in zip(ids, d_star)]


def load(stem: str | os.PathLike, backend: str | None = None) -> SearchBackend:
    """Load the index at `stem` (STEM.json + its files) with its backend (or `backend`)."""
    return open_backend(load_index(stem), backend)
