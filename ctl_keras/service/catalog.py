"""The catalog files and pictures the server needs beyond the search itself: the data files an index
json names (the generation watcher's stat), retiring a replaced generation's backend, and the
products' images for the page's thumbnails. Loading, checking and ranking are the retrieval
package's own functions (load_index, check_compatible, search.open_backend / search.ranked).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("ctl_keras.serve")


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


def retire(backend, seconds: float) -> None:
    """Close a replaced generation's search backend `seconds` after the swap, once the batches that read
    that generation before it are done (the caller passes more than a batch can last)."""
    timer = threading.Timer(seconds, backend.close)
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
