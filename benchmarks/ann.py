"""Every search backend at 1M products through the retrieval contract, against exact FAISS flat.

    python benchmarks/ann.py                                   # 1M x 128, sets (a) and (a'), every backend
    python benchmarks/ann.py --n=100000 --backends=ivf,hnsw    # quicker

Catalogs of unit vectors, one category: 50 super-centres, `centres` centres = normalize(super +
N(0, 1/d)), products = normalize(centre + N(0, 1/d)·noise); queries are fresh draws.
(a) clustered, noise 1.5 (a query's true top-10 spans ~2 clusters); (a') hard, noise 2.0 (~7 clusters).
Backends: ivf, ivf_sq8 (--nprobe points), ivf_pq (built once per --pq_nlist: the partitioned build over
the --nprobe points, the one-list build over --pq_rerank points), hnsw (--ef_search points), milvus.
Each backend is built by ctl_keras.retrieval (backend_class(name).build) and queried through its
`search(queries, category, k)`, one query at a time; the run prints, per row: build time
(wall-clock, --build_threads FAISS threads), bytes per vector (serialized FAISS index, or the Milvus
Lite database on disk, divided by N), median and p99 ms per query, speed-up over exact flat's median,
recall@10 against exact flat. Query time is process CPU time (time.process_time: FAISS at one
thread searches in the calling thread; Milvus Lite in its in-process gRPC server thread), because on
a machine shared with other jobs wall-clock measures the wait for a core; the wall median is printed
beside it. 3-5 points per backend trace the recall/speed-up curve.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

import timing  # noqa: E402  (the benchmarks' harness: --smoke, logging set-up)

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 1_000_000, "Products.")
flags.DEFINE_integer("dim", 128, "Embedding size.")
flags.DEFINE_integer("queries", 300, "Timed single queries (recall is over the same queries).")
flags.DEFINE_integer("centres", 2000, "Clusters of the catalog.")
flags.DEFINE_list("noise", ["1.5", "2.0"], "Noise norm per catalog: 1.5 = set (a), 2.0 = set (a').")
flags.DEFINE_float("centre_spread", 1.0, "Norm of the noise added to a super-centre to make a centre.")
flags.DEFINE_integer("build_threads", 2, "FAISS threads while building.")
flags.DEFINE_list("backends", ["ivf", "ivf_sq8", "ivf_pq", "hnsw", "milvus"], "Backends to measure besides exact flat.")
flags.DEFINE_list("nprobe", ["16", "32", "64", "128", "256"], "ivf / ivf_sq8 / ivf_pq nprobe points.")
flags.DEFINE_list("ef_search", ["64", "128", "256", "512"], "hnsw / milvus efSearch points.")
flags.DEFINE_integer("hnsw_m", 32, "HNSW M.")
flags.DEFINE_integer("ef_construction", 200, "HNSW efConstruction.")
flags.DEFINE_integer("rerank", 4, "ivf_sq8: short list of rerank*k re-ranked exactly.")
flags.DEFINE_list("pq_nlist", ["0", "1"], "ivf_pq builds: lists (0: ~4 sqrt(N); 1: one list, every code scanned).")
flags.DEFINE_list("pq_rerank", ["8", "16", "32", "64"], "ivf_pq rerank points of the one-list build.")
flags.DEFINE_integer("pq_ivf_rerank", 32, "ivf_pq rerank of the partitioned build (its points are --nprobe).")
flags.DEFINE_integer("milvus_n", 0, "Products for the milvus rows (0: --n); Milvus Lite inserts through gRPC.")
flags.DEFINE_string("milvus_uri", None, "A Milvus server (http://127.0.0.1:19530) for the milvus rows instead of "
                    "Milvus Lite; its rows' med/p99 are wall ms (the server's CPU is in another process).")

K = 10


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng, n, d, centres, noise):
    supers = _normalize(rng.standard_normal((50, d), dtype=np.float32))
    parent = rng.integers(0, 50, centres)
    centre = _normalize(supers[parent] + FLAGS.centre_spread / np.sqrt(d) *
                        rng.standard_normal((centres, d), dtype=np.float32))
    label = rng.integers(0, centres, n)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):  # chunks bound the temporary memory
        lab = label[s:s + 100_000]
        out[s:s + len(lab)] = _normalize(centre[lab] + noise / np.sqrt(d) *
                                         rng.standard_normal((len(lab), d), dtype=np.float32))
    return out, label


def _latencies(backend, queries, wall_clock=False):
    """(median, p99 ms, median wall ms, answers); median and p99 are CPU ms, or wall ms if wall_clock."""
    for q in queries[:5]:
        backend.search(q[None], "all", K)
    cpu, wall, found = [], [], []
    for q in queries:
        c, w = time.process_time(), time.perf_counter()
        ids, _ = backend.search(q[None], "all", K)
        cpu.append(1000 * (time.process_time() - c))
        wall.append(1000 * (time.perf_counter() - w))
        found.append(ids[0])
    timed = wall if wall_clock else cpu
    return statistics.median(timed), float(np.percentile(timed, 99)), statistics.median(wall), found


def _recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def _du(path) -> int:
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0])


class Table:
    def __init__(self):
        self.exact_med = None

    def row(self, method, params, build, bytes_per_vector, med, p99, wall, recall):
        self.exact_med = self.exact_med or med
        print(f"{method:<10} {params:<38} {build:8.1f} {bytes_per_vector:7.0f} {med:7.3f} {p99:7.3f} {wall:7.3f} "
              f"{self.exact_med / med:7.1f} {recall:9.3f}", flush=True)


def _set_search(backend, name, point: dict) -> None:
    """Set one curve point's search parameters (nprobe, rerank, ef_search / ef) on a built backend."""
    from ctl_keras.retrieval.exact import import_faiss

    if name == "milvus":
        backend.params["search"]["ef"] = point["ef"]
        return
    engine = backend.category(0)[1]
    engine.params.update(point)  # the re-ranking engines read "rerank" from here at each search
    if "ef_search" in point:
        engine.engine.hnsw.efSearch = point["ef_search"]
    if "nprobe" in point:
        import_faiss().extract_index_ivf(engine.engine).nprobe = point["nprobe"]


def _builds(name, tmp):
    """(build options, curve points) of each build of backend `name` measured: ivf_pq is built once per
    --pq_nlist (nprobe points on the partitioned build, rerank points on the one-list build)."""
    ints = lambda values: [int(v) for v in values]  # noqa: E731
    if name == "ivf_pq":
        for nlist in ints(FLAGS.pq_nlist):
            points = [{"rerank": r} for r in ints(FLAGS.pq_rerank)] if nlist == 1 else \
                [{"nprobe": n, "rerank": FLAGS.pq_ivf_rerank} for n in ints(FLAGS.nprobe)]
            yield dict(min_size=1, nlist=nlist), points
    elif name in ("ivf", "ivf_sq8"):
        yield dict(min_size=1, **({"rerank": FLAGS.rerank} if name == "ivf_sq8" else {})), \
            [{"nprobe": n} for n in ints(FLAGS.nprobe)]
    elif name == "hnsw":
        yield dict(min_size=1, m=FLAGS.hnsw_m, ef_construction=FLAGS.ef_construction), \
            [{"ef_search": e} for e in ints(FLAGS.ef_search)]
    else:
        yield dict(stem=os.path.join(tmp, f"m{time.time_ns()}"), uri=FLAGS.milvus_uri, index_type="HNSW",
                   m=FLAGS.hnsw_m, ef_construction=FLAGS.ef_construction), [{"ef": e} for e in ints(FLAGS.ef_search)]


def _wait_for_indexes(backend) -> None:
    """Milvus builds its segments' indexes in the background after a flush; until then a search scans the
    rows. Time the steady state. A server reports its progress (describe_index: indexed_rows); Milvus Lite
    does not (it always says Finished), so its background thread is waited for through a private hook."""
    if "://" in backend.uri:
        while True:
            info = backend.client.describe_index(backend.collection, "embedding")
            if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= info.get("total_rows", 0):
                return
            time.sleep(1)
    from milvus_lite.server_manager import server_manager_instance

    db = server_manager_instance._servers[os.path.abspath(backend.uri)][1]
    db.get_collection(backend.collection)._wait_for_bg()


def _bench_backend(name, index, queries, truth, table, faiss, tmp):
    from ctl_keras.retrieval.backend import backend_class

    for options, points in _builds(name, tmp):
        faiss.omp_set_num_threads(FLAGS.build_threads)
        start = time.perf_counter()
        backend = backend_class(name).build(index, **options)
        build = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        if name == "milvus":
            backend.client.flush(backend.collection)
            _wait_for_indexes(backend)
            server = "://" in backend.uri
            nbytes = float("nan") if server else _du(backend.uri)  # a server's memory is not ours to read
            fixed = f"M={FLAGS.hnsw_m} efC={FLAGS.ef_construction}" + (" server" if server else "")
        else:
            engine, server = backend.category(0)[1], False
            nbytes = len(engine.to_bytes())
            fixed = f"M={FLAGS.hnsw_m} efC={FLAGS.ef_construction}" if name == "hnsw" else \
                f"nlist={engine.params['nlist']}" + (f" rerank={FLAGS.rerank}" if name == "ivf_sq8" else "")
        for point in points:
            _set_search(backend, name, point)
            med, p99, wall, found = _latencies(backend, queries, wall_clock=name == "milvus" and server)
            params = " ".join([fixed] + [f"{k}={v}" for k, v in point.items()])
            table.row(name, params, build, nbytes / len(index), med, p99, wall, _recall(found, truth))
        if server:
            backend.client.drop_collection(backend.collection)  # a server's collections outlive this run
        backend.close()


def _bench_catalog(noise, rng, faiss, tmp):
    from ctl_keras.retrieval.backend import backend_class
    from ctl_keras.retrieval.index import CatalogIndex

    emb, label = clustered(rng, FLAGS.n + FLAGS.queries, FLAGS.dim, FLAGS.centres, noise)
    queries, emb, label = emb[FLAGS.n:], emb[:FLAGS.n], label[:FLAGS.n]
    index = CatalogIndex(np.char.add("p", np.arange(FLAGS.n).astype(str)), np.zeros(FLAGS.n, np.int32), emb, ("all",))
    del emb
    print(f"\n(noise {noise}) N={FLAGS.n:,} d={FLAGS.dim}, {len(queries)} queries, top-{K}")
    print(f"{'method':<10} {'params':<38} {'build s':>8} {'B/vec':>7} {'med ms':>7} {'p99 ms':>7} {'wall ms':>7} "
          f"{'speedup':>7} {'recall@10':>9}", flush=True)
    table = Table()
    faiss.omp_set_num_threads(FLAGS.build_threads)
    start = time.perf_counter()
    flat = backend_class("faiss").build(index)
    flat.category(0)
    build = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    med, p99, wall, truth = _latencies(flat, queries)
    table.row("exact flat", "", build, 4 * FLAGS.dim + 8, med, p99, wall, 1.0)
    spans = [len(set(label[[int(p[1:]) for p in t]])) for t in truth]  # product "p<i>" is row i
    print(f"  (true top-10 spans {np.mean(spans):.1f} clusters on average)", flush=True)
    del flat
    subset = FLAGS.milvus_n and FLAGS.milvus_n < FLAGS.n
    for name in FLAGS.backends:
        if name != "milvus" or not subset:
            _bench_backend(name, index, queries, truth, table, faiss, tmp)
    if "milvus" in FLAGS.backends and subset:
        # Milvus Lite at a smaller N, beside exact flat and FAISS HNSW at the same N (same table).
        m = FLAGS.milvus_n
        print(f"  N={m:,} (the first products) for Milvus Lite and its FAISS HNSW comparison", flush=True)
        sub = CatalogIndex(index.product_ids[:m], index.category_ids[:m], index.embeddings[:m], ("all",))
        table, flat = Table(), backend_class("faiss").build(sub)
        med, p99, wall, sub_truth = _latencies(flat, queries)
        table.row("exact flat", f"N={m}", 0.0, 4 * FLAGS.dim + 8, med, p99, wall, 1.0)
        for name in ("hnsw", "milvus"):
            _bench_backend(name, sub, queries, sub_truth, table, faiss, tmp)


def main(argv):
    del argv
    from ctl_keras.retrieval.exact import import_faiss

    faiss = import_faiss()
    rng = np.random.default_rng(0)
    print(" ".join(sys.argv), flush=True)
    tmp = tempfile.mkdtemp(prefix="ann-bench-")
    try:
        for noise in FLAGS.noise:
            _bench_catalog(float(noise), rng, faiss, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    timing.run(main)
