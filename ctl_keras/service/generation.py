"""One loaded catalog generation (index + search backend + the tower it was embedded with), and the
watcher that swaps in the next one.

A `Generation` is immutable once built; the service holds one reference (`Live.current`) and every
micro-batch reads it once, so a batch's tower call and searches use one generation: no answer mixes
two. A new generation is loaded and checked (index hash, tower fingerprint/version/categories via
check_compatible, every category of the backend built and searched once, one warm call of the tower)
off the request path, then swapped in by one assignment. A generation that fails any check is refused and the old
one kept; `reloads_total{result}` counts both outcomes.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from ctl_keras.retrieval.index import check_compatible, index_paths, load_index
from ctl_keras.retrieval.search import open_backend
from ctl_keras.service import catalog
from ctl_keras.service.tower import open_tower

log = logging.getLogger("ctl_keras.serve")
# A refused generation whose files stay as they are is loaded again after this many seconds, doubling
# up to REFUSED_RETRY_MAX while it keeps failing: what it lacked may come back without a new write (a
# Milvus server back up, a Lite database's files restored), and last_reload_error must then clear.
REFUSED_RETRY, REFUSED_RETRY_MAX = 10.0, 300.0


class Generation:
    def __init__(self, index, backend, tower, tower_meta, images, signature):
        self.index, self.backend, self.tower, self.meta = index, backend, tower, tower_meta
        self.images, self.signature = images, signature
        self.number = int(index.meta.get("generation", 1))
        self.version = int(tower_meta["version"])


def _signature(stem: str):
    """What identifies the files of the generation STEM.json names now (None: no json): the json's
    stat and those of the data files it names. A generation deployed by copying (json first, then
    the arrays) is refused while incomplete; its arrays' stat changes as the copy goes on, so the
    next poll retries it until it loads, while a refused generation whose files stay as they are is
    not reloaded (and re-hashed) every poll."""
    path = index_paths(stem)[1]
    try:
        st = os.stat(path)
    except OSError:
        return None
    stats = [(st.st_ino, st.st_mtime_ns, st.st_size)]
    for name in catalog.data_files(path):
        try:
            st = os.stat(os.path.join(os.path.dirname(path), name))
            stats.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((name, None))
    return tuple(stats)


def _example_image(size: int = 64) -> bytes:
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def load_generation(opts, previous: Generation | None = None) -> Generation:
    """Load and check STEM's current generation; reuses the previous tower when the version is equal."""
    from ctl_keras.savedmodel.exporter import SCENE, read_meta, resolve_version_dir

    signature = _signature(opts.index)
    index = load_index(opts.index)  # hash-checked; ValueError/OSError when missing or torn
    export_dir = opts.export_dir or index.meta.get("export_dir")
    if not export_dir:
        raise ValueError("the index does not record its export dir; pass --export_dir")
    version_dir = resolve_version_dir(export_dir, SCENE, index.meta.get("tower_version"))
    meta = read_meta(version_dir)
    check_compatible(index, meta)
    if previous is not None and previous.version == int(meta["version"]) \
            and previous.meta.get("model_fingerprint") == meta.get("model_fingerprint"):
        tower = previous.tower
    else:
        tower = open_tower(opts.tower, version_dir, int(meta["version"]))
    query, _ = tower([_example_image()])  # warm, and proves the tower answers for this catalog
    if query.shape[1:] != (len(index.categories), index.embedding_dim):
        raise ValueError(f"scene tower answers {query.shape[1:]} but the index has "
                         f"{len(index.categories)} categories of {index.embedding_dim}-d embeddings")
    backend = _warm_backend(index, opts.backend)
    images = catalog.product_images(opts.product_images, index, opts.max_thumbnail_bytes)
    return Generation(index, backend, tower, meta, images, signature)


def _warm_backend(index, name: str | None):
    """The index's search backend with every category's engine built now, not on the first request;
    one search per category proves each one answers (closed again when one does not)."""
    backend = open_backend(index, name)
    try:
        for category in index.categories:
            backend.search(np.zeros((1, index.embedding_dim), np.float32), category, 1)
    except BaseException:
        backend.close()
        raise
    return backend


class Live:
    """The current generation and the background watcher of STEM."""

    def __init__(self, opts, metrics):
        self.opts, self.metrics = opts, metrics
        self.current: Generation | None = None
        self.last_error: str | None = None
        self._refused, self._refused_at, self._retry = None, 0.0, REFUSED_RETRY
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self, force: bool = False) -> str:
        """Load STEM's generation if it changed (or force); returns what happened, one line."""
        with self._lock:
            old, signature = self.current, _signature(self.opts.index)
            retry = signature == self._refused and time.monotonic() - self._refused_at >= self._retry
            if not force and old is not None and signature in (old.signature, self._refused) and not retry:
                return "unchanged"
            try:
                new = load_generation(self.opts, old)
            except Exception as err:  # any failure: refuse the generation, keep serving the old one
                self.last_error = " ".join(str(err).split())[:300] or type(err).__name__
                self.metrics.reloads.labels(result="refused").inc()
                # not retried every poll; a new write, /admin/reload or REFUSED_RETRY retries it
                self._retry = min(2 * self._retry, REFUSED_RETRY_MAX) if signature == self._refused else REFUSED_RETRY
                self._refused, self._refused_at = signature, time.monotonic()
                log.warning("index generation refused, keeping %s: %s",
                            old.number if old else "none", self.last_error)
                return f"refused: {self.last_error}"
            self.current, self.last_error, self._refused = new, None, None
            if old is not None:  # its connections (a Lite database) once its last batches are done
                catalog.retire(old.backend, max(5.0, 2 * self.opts.deadline_ms / 1000))
            self.metrics.reloads.labels(result="loaded").inc()
            self.metrics.generation.set(new.number)
            self.metrics.model_version.set(new.version)
            log.info("serving index generation %d (%d products), scene tower version %d",
                     new.number, len(new.index), new.version)
            return f"loaded generation {new.number}"

    def start_watching(self, interval: float) -> None:
        if interval <= 0:
            return

        def watch():
            while not self._stop.wait(interval):
                self.reload()

        self._thread = threading.Thread(target=watch, name="index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_ready(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.current is None and time.monotonic() < end:
            time.sleep(0.05)
        return self.current is not None
