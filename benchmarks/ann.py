"""Approximate retrieval at 1M products: the `--approximate` backend (FAISS IVF-Flat) vs exact FAISS flat.

    python benchmarks/ann.py                      # 1M products, 128-d, both catalogs, IVF + HNSW
    python benchmarks/ann.py --n=100000 --nohnsw  # quicker

One run, two catalogs of unit vectors:
(a) clustered: 50 super-centres, 2,000 centres around them, products around the centres
    (p = normalize(centre + noise)); the noise is wide enough that a query's exact top-10 spans
    several of the 2,000 clusters (the run prints how many on average);
(b) uniform random unit vectors: no structure, the worst case for any partitioning index.
Queries are fresh draws from the same distribution. For each catalog: exact FAISS flat (the truth),
the product's IVF backend (ctl_keras.retrieval.ann: nlist ~ 4 sqrt N) at several nprobe, and HNSW
(M=32) at several efSearch. Reports build time (--build_threads threads), index memory (serialized
size), median and p99 ms per single query, recall@10 vs exact. Query time is the CPU time of the
querying thread (FAISS at one thread runs the search in it): on a machine shared with other jobs,
wall-clock time measures the waiting for a core, not the search. Build time is wall-clock.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
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
flags.DEFINE_integer("centres", 2000, "Clusters of the clustered catalog.")
flags.DEFINE_float("noise", 2.0, "Norm of the noise added to a unit centre (clustered catalog).")
flags.DEFINE_float("centre_spread", 1.0, "Norm of the noise added to a super-centre to make a centre.")
flags.DEFINE_integer("build_threads", 2, "FAISS threads while building.")
flags.DEFINE_bool("uniform", True, "Also run catalog (b), uniform random vectors.")
flags.DEFINE_bool("ivf", True, "Build the product's IVF backend.")
flags.DEFINE_bool("hnsw", True, "Also build HNSW (M=32) for comparison.")
flags.DEFINE_list("nprobe", ["32", "64", "128", "256"], "IVF nprobe values to measure.")
flags.DEFINE_list("ef_search", ["32", "64", "128", "256"], "HNSW efSearch values to measure.")

K = 10


def _normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng, n, d, centres, noise):
    """Hierarchical mixture: centres near 50 super-centres, points near the centres (see docstring)."""
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


def uniform(rng, n, d):
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        out[s:s + m] = _normalize(rng.standard_normal((m, d), dtype=np.float32))
    return out, None


def _latencies(search, queries):
    for q in queries[:5]:
        search(q[None])
    times, found = [], []
    for q in queries:
        start = time.thread_time()
        _, rows = search(q[None])
        times.append(1000 * (time.thread_time() - start))
        found.append(rows[0])
    return statistics.median(times), float(np.percentile(times, 99)), np.stack(found)


def _recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


class _Rows(list):
    """Prints each row as it is measured (a long run shows its progress)."""

    exact_med = None

    def append(self, row):
        super().append(row)
        method, params, build, nbytes, med, p99, recall = row
        self.exact_med = self.exact_med or med
        print(f"{method:<10} {params:<34} {build:8.1f} {nbytes / 2**20:7.0f} {med:7.3f} {p99:7.3f} "
              f"{self.exact_med / med:7.1f} {recall:9.3f}", flush=True)


def _bench_catalog(name, emb, queries, label, faiss):
    d = emb.shape[1]
    rows = _Rows()
    print(f"\n({name}) N={len(emb):,} d={d}, {len(queries)} queries, top-{K}")
    print(f"{'method':<10} {'params':<34} {'build s':>8} {'MB':>7} {'med ms':>7} {'p99 ms':>7} "
          f"{'speedup':>7} {'recall@10':>9}", flush=True)
    faiss.omp_set_num_threads(FLAGS.build_threads)
    start = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(emb)
    flat_build = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    med, p99, truth = _latencies(lambda q: flat.search(q, K), queries)
    rows.append(("exact flat", "", flat_build, emb.nbytes, med, p99, 1.0))
    if label is not None:
        print(f"  (true top-10 spans {np.mean([len(set(label[t])) for t in truth]):.1f} clusters on average)",
              flush=True)

    if FLAGS.ivf:
        _bench_ivf(emb, queries, truth, rows, faiss)
    if FLAGS.hnsw:
        _bench_hnsw(emb, queries, truth, rows, faiss)


def _bench_ivf(emb, queries, truth, rows, faiss):
    from ctl_keras.retrieval.ann import IVFCategory, ivf_params

    nlist, default_nprobe = ivf_params(len(emb))
    faiss.omp_set_num_threads(FLAGS.build_threads)
    start = time.perf_counter()
    ivf = IVFCategory.build(emb, nlist, default_nprobe)
    ivf_build = time.perf_counter() - start
    ivf_bytes = len(ivf.to_bytes())
    faiss.omp_set_num_threads(1)
    for nprobe in sorted({int(x) for x in FLAGS.nprobe} | {default_nprobe}):
        ivf.engine.nprobe = nprobe
        med, p99, found = _latencies(lambda q, index=ivf: index.search(q, K), queries)
        tag = " (default)" if nprobe == default_nprobe else ""
        rows.append(("ivf-flat", f"nlist={nlist} nprobe={nprobe}{tag}", ivf_build, ivf_bytes, med, p99,
                     _recall(found, truth)))
    del ivf


def _bench_hnsw(emb, queries, truth, rows, faiss):
    faiss.omp_set_num_threads(FLAGS.build_threads)
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(emb.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    hnsw.add(emb)
    build = time.perf_counter() - start
    nbytes = len(faiss.serialize_index(hnsw))
    faiss.omp_set_num_threads(1)
    for ef in (int(x) for x in FLAGS.ef_search):
        hnsw.hnsw.efSearch = ef
        med, p99, found = _latencies(lambda q: hnsw.search(q, K), queries)
        rows.append(("hnsw", f"M=32 efC=64 efSearch={ef}", build, nbytes, med, p99, _recall(found, truth)))


def main(argv):
    del argv
    from ctl_keras.retrieval.search import import_faiss

    faiss = import_faiss()
    rng = np.random.default_rng(0)
    print(f"{' '.join(sys.argv)}")
    emb, label = clustered(rng, FLAGS.n + FLAGS.queries, FLAGS.dim, FLAGS.centres, FLAGS.noise)
    _bench_catalog("a: clustered", emb[:FLAGS.n], emb[FLAGS.n:], label[:FLAGS.n], faiss)
    del emb
    if FLAGS.uniform:
        emb, _ = uniform(rng, FLAGS.n + FLAGS.queries, FLAGS.dim)
        _bench_catalog("b: uniform", emb[:FLAGS.n], emb[FLAGS.n:], None, faiss)
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    timing.run(main)
