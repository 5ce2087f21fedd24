"""The server's one door into ctl_keras.retrieval: load a catalog generation and rank a query.

Everything the service needs from retrieval goes through this module (load_index, check_compatible,
parse_categories, Searcher, the product images of the index's source), so a change of the retrieval
package's layout touches one file here. `ranked` builds exactly the list `recommend look --json`
prints for one category: [{"product_id", "d_star"}] by d* ascending.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

log = logging.getLogger("ctl_keras.serve")


def load(stem: str):
    """The index at STEM (hash-checked by load_index); ValueError/OSError when missing or torn."""
    from ctl_keras.retrieval.index import load_index

    return load_index(stem)


def json_path(stem: str) -> str:
    from ctl_keras.retrieval.index import index_paths

    return index_paths(stem)[1]


def data_files(json_file: str) -> list[str]:
    """Basenames of the data files the index json names (its arrays, the search backend's files);
    [] when the json cannot be read (load reports why)."""
    import json
    import os

    from ctl_keras.retrieval.index import index_paths

    try:
        with open(json_file) as f:
            meta = json.load(f)
        names = [meta.get("npz_file") or os.path.basename(index_paths(json_file)[0])]
        search = meta.get("search") or {}  # a FAISS backend's file; Milvus keeps its data elsewhere
        return names + [search["ann_file"]] if isinstance(search.get("ann_file"), str) else names
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def check_compatible(index, tower_meta: dict) -> None:
    from ctl_keras.retrieval.index import check_compatible as check

    check(index, tower_meta)


def categories(index, asked) -> list[str]:
    """None/"" -> every category; "a,b" -> those (ValueError naming the unknown ones)."""
    from ctl_keras.retrieval.scene_query import parse_categories

    return parse_categories(index, asked)


class Ranker:
    """One generation's searcher; `ranked(queries [n, d], category, k)` -> n `recommend look` lists,
    from one search call (one matmul for the exact backends) for the n queries."""

    def __init__(self, index, backend: str | None = None):
        from ctl_keras.retrieval.search import Searcher

        self.index, self.searcher = index, Searcher(index, backend)
        try:  # build every category's engine now, not on the first request; proves each one answers
            for name in index.categories:
                self.searcher.search(np.zeros((1, index.embedding_dim), np.float32), name, 1)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the searcher's connections (a Milvus Lite database is held until then)."""
        self.searcher.engine.close()

    def ranked(self, queries: np.ndarray, category: str, k: int) -> list[list[dict]]:
        ids, d_star = self.searcher.search(queries, category, k)
        return [[{"product_id": str(p), "d_star": float(d)} for p, d in zip(row_ids, row_d)]
                for row_ids, row_d in zip(ids, d_star)]


def retire(ranker: Ranker, seconds: float) -> None:
    """Close a replaced generation's searcher `seconds` after the swap, once the batches that read that
    generation before it are done (the caller passes more than a batch can last)."""
    timer = threading.Timer(seconds, ranker.close)
    timer.daemon = True
    timer.start()


def product_images(override: str | None, index, max_bytes: int) -> dict[str, bytes]:
    """{product_id: image bytes} of the index's products for the page's thumbnails, each read from the
    source the index records for it (absolute paths: any cwd; an update from another directory adds
    its own), or every one from `override` (--product_images). {} when the images would exceed
    max_bytes in memory (the page then shows ids only). Products whose image is not found are
    counted in one warning (a moved or deleted source, an index built before sources were recorded
    with a relative path)."""
    from ctl_keras.retrieval.catalog import iter_products

    if max_bytes <= 0:
        return {}
    out, total = {}, 0
    for source, wanted in _plan(override, index).items():
        try:
            for product_id, _, image in iter_products(source, index.categories):
                if product_id in wanted and product_id not in out:
                    total += len(image)
                    if total > max_bytes:
                        log.warning("thumbnails off: the catalog's images exceed --max_thumbnail_bytes=%d", max_bytes)
                        return {}
                    out[product_id] = image
        except (OSError, ValueError) as err:
            log.warning("thumbnails: source %s unreadable: %s", source, " ".join(str(err).split())[:200])
    missing = [p for p in index.product_ids.tolist() if p not in out]
    if missing:
        log.warning("thumbnails: %d of %d products have no image in their source (e.g. %s)%s", len(missing),
                    len(index), ", ".join(missing[:5]), "" if override else "; --product_images=DIR overrides")
    return out


def _plan(override: str | None, index) -> dict[str, set]:
    """{source: product ids to read from it}."""
    ids = index.product_ids.tolist()
    if override:
        return {override: set(ids)}
    sources = index.meta.get("sources") or []
    if index.source_ids is None or not sources:
        return {index.meta["source"]: set(ids)} if index.meta.get("source") else {}
    plan: dict[str, set] = {}
    for product_id, s in zip(ids, index.source_ids.tolist()):
        if 0 <= s < len(sources):
            plan.setdefault(sources[s], set()).add(product_id)
    return plan
