"""The search-backend contract every retrieval backend implements, and the registry of their names.

Like TF Recommenders' `TopK` layers and TF Similarity's search backends, a backend is

    build(index, **options)          from a catalog: product ids, embeddings, category ids (a CatalogIndex)
    search(queries, category, k)     -> (product_ids [B, k'], d_star [B, k'] float32), d* = 2 - q·f_p
                                        ascending, k' = min(k, products of the category), ties by catalog row
    add(ids, embeddings, categories) upsert by product id (a changed product replaces its old vector)
    remove(ids)                      delete by product id; a removed id is never returned again
    save(prefix) -> meta             its own files (`<prefix>.*`), written before the index json; `meta`
                                     goes into the json's "search" entry
    load(index, meta, directory)     the inverse (class method); a missing, torn or partly written
                                     part raises IncompleteBackend
    commit(previous_meta)            after the json that names this backend's state was renamed into place

Exact backends (numpy, tf, faiss) hold nothing but the embeddings, so any index can be searched with
them (they are the ground truth). The indexed ones are built by `recommend index --backend=NAME` and
recorded in the index json; asking an index for an indexed backend it does not hold is refused in one
line naming the rebuild command (search.py).
"""

from __future__ import annotations

import abc
import importlib

EXACT_BACKENDS = ("numpy", "tf", "faiss")
FAISS_BACKENDS = ("ivf", "hnsw", "ivf_sq8", "ivf_pq")  # per category, with the min_size exact fallback
INDEXED_BACKENDS = FAISS_BACKENDS + ("milvus",)
BACKENDS = EXACT_BACKENDS + INDEXED_BACKENDS
_MODULES = {"numpy": "exact", "tf": "exact", "faiss": "exact", "ivf": "faiss_ann", "hnsw": "faiss_ann",
            "ivf_sq8": "faiss_ann", "ivf_pq": "faiss_ann", "milvus": "milvus"}


class IncompleteBackend(ValueError):
    """The index json names backend state that is missing, torn or only partly written."""


class SearchBackend(abc.ABC):
    name: str = ""
    exact: bool = False

    @classmethod
    @abc.abstractmethod
    def build(cls, index, **options) -> "SearchBackend":
        """The backend over a CatalogIndex (an indexed one builds its per-category indexes here)."""

    @abc.abstractmethod
    def search(self, queries, category: str, k: int):
        """(product_ids [B, k'], d_star [B, k'] float32), best first (the module docstring)."""

    @abc.abstractmethod
    def add(self, ids, embeddings, categories) -> None:
        """Upsert by product id."""

    @abc.abstractmethod
    def remove(self, ids) -> None:
        """Delete by product id."""

    def save(self, prefix: str) -> dict:
        return {"backend": self.name}

    @classmethod
    def load(cls, index, meta: dict, directory: str, verify: bool = True) -> "SearchBackend":
        """verify=False: an update resuming a half-applied change (milvus) may open it anyway."""
        return cls.build(index)

    def close(self) -> None:  # noqa: B027 (an optional hook: the exact backends hold nothing)
        """Release connections or locks (a Milvus Lite database is held by one process at a time)."""

    def commit(self, previous_meta: dict | None) -> None:  # noqa: B027 (an optional hook)
        """Called once the index json naming this state is in place (e.g. drop a superseded collection)."""

    def files(self, meta: dict) -> list[str]:
        """Local files (basenames) this backend's saved state consists of: kept by save_index's cleanup."""
        return [meta[k] for k in ("ann_file",) if k in meta]


def backend_class(name: str) -> type[SearchBackend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    module = importlib.import_module(f"ctl_keras.retrieval.{_MODULES[name]}")
    return module.CLASSES[name]


def rebuild_command(meta: dict, stem: str, backend: str) -> str:
    """The `recommend index` command that rebuilds this index with `backend`."""
    parts = ["ctl recommend index", f"--backend={backend}",
             f"--export_dir={meta.get('export_dir', 'EXPORT')}", f"--products={meta.get('source', 'PRODUCTS')}",
             f"--index={stem}"]
    return " ".join(parts)
