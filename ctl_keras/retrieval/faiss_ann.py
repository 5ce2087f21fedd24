"""The FAISS approximate backends, one index per category: `ivf`, `hnsw` and the compressed `ivf_sq8`, `ivf_pq`.

One class, `FaissANN`; each backend name is a registration of it (KINDS): the FAISS index-factory
string a category's index is built from, the library named in the index json and the default options.

- ivf: IndexIVFFlat. k-means into nlist ~ 4 sqrt(n) lists, scan the nprobe best; full float32
  vectors, so scores are exact and only the choice of products looked at is approximate.
- hnsw: IndexHNSWFlat (graph; M links per node, efConstruction at build, efSearch at query).
- ivf_sq8: IVF with 8-bit scalar-quantized codes (d bytes a vector instead of 4d): the nprobe lists
  are scanned on the codes for a short list of rerank·k, which is re-ranked exactly with the float
  embeddings the catalog index holds, so every returned d* is exact.
- ivf_pq: IVF over 4-bit product-quantization codes scanned with FAISS's fast-scan kernels (a code per
  2 dimensions: 32 bytes a vector at d=128), short list of rerank·k re-ranked exactly like ivf_sq8.
  `nlist=1` makes it one list, a brute-force scan of the codes: it keeps its recall on catalogs whose
  neighbours spread over many clusters, where any partition needs a large nprobe (BUILD_NOTES).

Categories with fewer than `min_size` products get no index: they are searched exactly (FAISS flat
is sub-millisecond there), so a small catalog such as the demo's keeps recall 1.0. The per-category
indexes are serialized into one `<prefix>.ann.npz` (atomically), its sha256 recorded in the index
json, which load() checks. add/remove rebuild the changed categories only. benchmarks/ann.py measures
recall@10, latency and memory against exact flat at 1M products (BUILD_NOTES.md).
"""

from __future__ import annotations

import hashlib
import io
import dataclasses
import math
import os

import numpy as np
from absl import logging

from ctl_keras.utils.atomic import atomic_write
from ctl_keras.retrieval.backend import IncompleteBackend
from ctl_keras.retrieval.exact import FaissFlatEngine, PerCategory, import_faiss, stable_order

DEFAULT_MIN_SIZE = 10_000  # below this, exact flat search costs < 0.1 ms per query (BUILD_NOTES)


@dataclasses.dataclass(frozen=True)
class Kind:
    """A FAISS backend: `factory` is formatted with nlist, m (HNSW links) and pq_m (sub-quantizers); a kind
    whose defaults hold "rerank" re-ranks a short list exactly (compressed codes), and with nlist=1 drops
    the IVF prefix: one flat list of codes. `min_train`: rows its codebooks want beyond k-means' 40 a list."""

    factory: str
    library: str
    defaults: dict
    min_train: int = 0


KINDS = {
    "ivf": Kind("IVF{nlist},Flat", "IndexIVFFlat", {"nprobe_fraction": 1 / 64, "nlist": 0}),
    "hnsw": Kind("HNSW{m},Flat", "IndexHNSWFlat", {"m": 32, "ef_construction": 200, "ef_search": 128}),
    # SQ8 learns a min and max per dimension: the k-means sample is plenty
    "ivf_sq8": Kind("IVF{nlist},SQ8", "IVF,SQ8 + exact re-ranking",
                    {"nprobe_fraction": 1 / 64, "nlist": 0, "rerank": 4}),
    # 16 centroids per sub-quantizer; with nlist=1 the k-means sample would be 40 points
    "ivf_pq": Kind("IVF{nlist},PQ{pq_m}x4fs", "IVF,PQ 4-bit fast-scan + exact re-ranking",
                   {"nprobe_fraction": 1 / 16, "nlist": 0, "rerank": 32}, min_train=10_000),
}


def ivf_params(n: int, nprobe_fraction: float = 1 / 64, nlist: int = 0) -> tuple[int, int]:
    """(nlist, nprobe) for a category of n products: nlist ~ 4 sqrt(n) (4096 at 1M) unless given, nprobe a
    fixed fraction of the lists (1/64: 64 of 4096), at least 8 (or every list, when there are fewer)."""
    nlist = int(nlist) or max(16, 2 ** round(math.log2(4 * math.sqrt(n))))
    return nlist, min(nlist, max(8, round(nlist * nprobe_fraction)))


def pq_m(d: int) -> int:
    """Sub-quantizers of ivf_pq: one 4-bit code per 2 dimensions (32 bytes a vector at d=128)."""
    return d // 2 if d % 2 == 0 else d


def _trained(factory: str, matrix: np.ndarray, seed: int, train_size: int, ef_construction: int = 0):
    """A FAISS index from a factory string, trained on a seeded sample of `train_size` rows (all of them
    when there are fewer), with the matrix added (an HNSW graph built with `ef_construction`)."""
    faiss = import_faiss()
    engine = faiss.index_factory(matrix.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(engine)
    if ivf is not None:
        ivf.cp.seed = seed
    if ef_construction:
        engine.hnsw.efConstruction = ef_construction
    rng = np.random.default_rng(seed)
    sample = matrix if len(matrix) <= train_size else \
        matrix[np.sort(rng.choice(len(matrix), train_size, replace=False))]
    engine.train(np.ascontiguousarray(sample))
    engine.add(matrix)
    return engine


def _ivf_train_size(nlist: int, min_train: int = 0) -> int:
    """k-means wants 40 points per list (FAISS warns below 39); codebooks may need more (`min_train`)."""
    return max(40 * nlist, min_train)


class FaissEngine:
    """A FAISS index of one category; `params` say how to search it (nprobe, efSearch)."""

    def __init__(self, engine, params: dict):
        self.engine, self.params = engine, params
        ivf = import_faiss().try_extract_index_ivf(engine)  # None for ivf_pq's one-list (flat) codes
        if ivf is not None and "nprobe" in params:
            ivf.nprobe = params["nprobe"]
        if "ef_search" in params:
            engine.hnsw.efSearch = params["ef_search"]

    def search(self, queries, k):
        return stable_order(*self.engine.search(queries, k))

    def to_bytes(self) -> np.ndarray:
        return import_faiss().serialize_index(self.engine)


class RerankedEngine(FaissEngine):
    """The compressed codes give a short list of rerank·k rows, re-scored exactly with the float rows of
    the catalog (read through the backend, so no second copy of them is held)."""

    def __init__(self, engine, params, backend: "FaissANN", c: int):
        super().__init__(engine, params)
        self.backend, self.c = backend, c

    def search(self, queries, k):
        rows = self.backend.category(self.c)[0]
        _, cand = self.engine.search(queries, min(len(rows), k * self.params["rerank"]))
        safe = np.maximum(cand, 0)
        scores = np.einsum("bd,bkd->bk", queries, self.backend.index.embeddings[rows[safe]])
        scores[cand < 0] = -np.inf
        scores, local = stable_order(scores, np.where(cand < 0, np.iinfo(np.int64).max, cand))
        local = np.where(np.isfinite(scores), local, -1)
        return scores[:, :k], local[:, :k]


class FaissANN(PerCategory):
    """Every FAISS backend: a registration (`CLASSES[name]`, a subclass that only sets `name`) picks its Kind."""

    def __init__(self, index, min_size: int = DEFAULT_MIN_SIZE, seed: int = 0, **options):
        self.kind = KINDS[self.name]
        super().__init__(index, **dict(self.kind.defaults, **options))
        self.min_size, self.seed = int(min_size), int(seed)
        self.params: dict[str, dict] = {}
        self.rebuilt: list[str] = []  # categories whose index add/remove rebuilt

    @classmethod
    def build(cls, index, **options):
        backend = cls(index, **options)
        for c in range(len(index.categories)):
            backend.category(c)
        return backend

    def _engine(self, c: int, matrix: np.ndarray):
        name, n = self.index.categories[c], len(matrix)
        if n < self.min_size:
            self.params[name] = {"exact": True, "size": n}
            return FaissFlatEngine(matrix)
        logging.info("building %s index for %s: %d products", self.name, name, n)
        engine, params = self._make(matrix)
        self.params[name] = dict(params, exact=False, size=n)
        return self._wrap(engine, self.params[name], c)

    def _wrap(self, engine, params, c):
        reranked = "rerank" in self.kind.defaults
        return RerankedEngine(engine, params, self, c) if reranked else FaissEngine(engine, params)

    def _sizes(self, n: int) -> tuple[int, int]:
        nlist, nprobe = ivf_params(n, self.options["nprobe_fraction"], self.options.get("nlist", 0))
        if nlist > n:  # FAISS's k-means would stop with an assertion deep inside
            raise ValueError(f"--ivf_nlist={nlist} is more lists than the {n} products of a category to index; "
                             "use a smaller --ivf_nlist (0: ~4 sqrt(n) per category)")
        return nlist, nprobe

    def factory(self, n: int, d: int) -> tuple[str, dict]:
        """(index-factory string, search params recorded in the json) for a category of n d-dim products."""
        o, kind = self.options, self.kind
        if "{m}" in kind.factory:  # HNSW: a graph, no lists
            m = int(o["m"])
            return kind.factory.format(m=m), {"m": m, "ef_construction": int(o["ef_construction"]),
                                                   "ef_search": int(o["ef_search"])}
        nlist, nprobe = self._sizes(n)
        params = {"nlist": nlist, "nprobe": nprobe}
        factory = kind.factory.format(nlist=nlist, pq_m=pq_m(d))
        if "rerank" in kind.defaults:
            params["rerank"] = int(o["rerank"])
            if nlist == 1:  # the flat index of the same codes, without IVF's list bookkeeping (ivf_pq's
                factory = factory.partition(",")[2]  # one-list rows in BUILD_NOTES: 2.02 vs 1.81 ms at 1M)
        return factory, params

    def _make(self, matrix):
        factory, params = self.factory(*matrix.shape)
        train_size = _ivf_train_size(params["nlist"], self.kind.min_train) if "nlist" in params else len(matrix)
        return _trained(factory, matrix, self.seed, train_size, params.get("ef_construction", 0)), params

    def _changed(self, categories):
        super()._changed(categories)
        for c in sorted(categories):
            self.category(c)
        done = set(self.rebuilt) | {self.index.categories[c] for c in categories}
        self.rebuilt = [name for name in self.index.categories if name in done]

    def save(self, prefix: str) -> dict:
        path = prefix + ".ann.npz"
        engines = {c: e for c, (_, e) in self._cache.items() if isinstance(e, FaissEngine)}

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **{f"c{c}": e.to_bytes() for c, e in engines.items()})

        atomic_write(path, write)
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        return {"backend": self.name, "library": f"faiss {self.kind.library} (inner product)", "min_size": self.min_size,
                "seed": self.seed, "options": self.options, "categories": dict(self.params),
                "ann_file": os.path.basename(path), "ann_sha256": sha}

    @classmethod
    def load(cls, index, meta: dict, directory: str, **_):
        path = os.path.join(directory, meta.get("ann_file", ""))
        if not meta.get("ann_file") or not os.path.isfile(path):
            raise IncompleteBackend(f"{path} is missing")
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != meta.get("ann_sha256"):
            raise IncompleteBackend(f"{path} does not match the index json (interrupted write?)")
        backend = cls(index, min_size=meta.get("min_size", DEFAULT_MIN_SIZE), seed=meta.get("seed", 0),
                      **meta.get("options", {}))
        arrays = np.load(io.BytesIO(data))
        faiss = import_faiss()
        for c, name in enumerate(index.categories):
            params = meta["categories"].get(name, {"exact": True})
            rows = np.flatnonzero(index.category_ids == c)
            backend.params[name] = dict(params, size=int(len(rows)))
            if params["exact"]:
                continue
            engine = faiss.deserialize_index(np.asarray(arrays[f"c{c}"], np.uint8))
            backend._cache[c] = rows, backend._wrap(engine, params, c)
        return backend


# One registration per backend name: the names users pass (--backend=ivf_pq) and index jsons record.
CLASSES = {name: type(f"Faiss_{name}", (FaissANN,), {"name": name}) for name in KINDS}
