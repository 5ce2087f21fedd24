"""Per-query retrieval latency over random unit 128-d catalogs: exact backends vs the bare product.

    python benchmarks/retrieval.py            # 10k and 100k products
    python benchmarks/retrieval.py --full     # 10k, 100k and 1M products

One run. For each catalog size N (one category holding all N rows), top-10 for single queries with
- floor: the bare matrix-vector product E @ q in numpy (no top-k, no bookkeeping);
- numpy / tf / faiss_flat: ctl_keras.retrieval.search.open_backend, exact (argpartition; matmul+top_k;
  IndexFlatIP);
- faiss_ivf: IndexIVFFlat (inner product, nlist = sqrt N, nprobe = nlist / 8), approximate; recall@10
  against the exact answer. Random unit vectors have no cluster structure, the worst case for IVF.
Median ms per query over `--queries` queries after warm-up; ratios to the floor (target: exact
retrieval within 1.5x of the bare product). Seeded. Every library runs on `--threads` threads
(default 1): on a shared machine, multi-threaded BLAS/OpenMP on busy cores times the waiting, not
the work.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Thread counts must be fixed before numpy/BLAS load; the --threads flag is parsed later.
_THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

import timing  # noqa: E402  (first: puts the repo root on sys.path)

FLAGS = flags.FLAGS
flags.DEFINE_bool("full", False, "Add the 1M-product catalog.")
flags.DEFINE_integer("queries", 30, "Timed single queries per measurement.")
flags.DEFINE_integer("dim", 128, "Embedding size.")
flags.DEFINE_integer("k", 10, "Top-k.")
flags.DEFINE_integer("nprobe", None, "IVF lists visited per query; default nlist / 8.")
flags.DEFINE_integer("threads", 1, "Threads for numpy/BLAS, TF and FAISS (use the --threads=N form).")


def _unit(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _median_ms(fn, queries) -> float:
    for q in queries[:3]:
        fn(q)
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _ivf(emb, nprobe, rng):
    import faiss

    n, d = emb.shape
    nlist = int(np.sqrt(n))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    train = emb[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    index.train(train)
    index.add(emb)
    index.nprobe = nprobe or max(1, nlist // 8)
    return index, nlist, index.nprobe


def main(argv):
    del argv
    import faiss
    import tensorflow as tf

    from ctl_keras.retrieval.index import CatalogIndex
    from ctl_keras.retrieval.search import open_backend

    faiss.omp_set_num_threads(FLAGS.threads)
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    sizes = timing.pick([10_000, 100_000] + ([1_000_000] if FLAGS.full else []), [500, 1000])
    rng = np.random.default_rng(0)
    k, rows = FLAGS.k, []
    for n in sizes:
        logging.info("catalog of %d", n)
        emb = _unit(rng, n, FLAGS.dim)
        queries = _unit(rng, FLAGS.queries, FLAGS.dim)
        index = CatalogIndex(np.arange(n).astype(str), np.zeros(n, np.int32), emb, ("all",))
        emb_tf = tf.constant(emb)
        tf_floor = tf.function(lambda q, m=emb_tf: tf.linalg.matvec(m, q))
        times = {"floor_np": _median_ms(lambda q, m=emb: m @ q, queries),
                 "floor_tf": _median_ms(lambda q: tf_floor(q).numpy(), queries)}
        exact = {}
        for backend in ("numpy", "tf", "faiss"):
            searcher = open_backend(index, backend)
            times[backend] = _median_ms(lambda q: searcher.search(q, "all", k), queries)
            exact[backend] = np.stack([searcher.search(q, "all", k)[0][0] for q in queries])
        agree = all(np.array_equal(exact[b], exact["numpy"]) for b in exact)
        ivf, nlist, nprobe = _ivf(emb, FLAGS.nprobe, rng)
        times["faiss_ivf"] = _median_ms(lambda q: ivf.search(q[None], k), queries)
        approx = ivf.search(queries, k)[1].astype(str)
        recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact["numpy"])])
        rows.append((n, times, recall, nlist, nprobe, agree))
        del emb, emb_tf, index
    print(f"top-{k} of random unit {FLAGS.dim}-d vectors, median ms per single query over {FLAGS.queries}, "
          f"{FLAGS.threads} thread(s); floor = min(numpy E@q, tf matvec)")
    print(f"{'N':>9} {'fl_np':>7} {'fl_tf':>7} {'numpy':>7} {'tf':>7} {'faiss':>7} {'ivf':>7} | "
          f"{'np/fl':>6} {'tf/fl':>6} {'fs/fl':>6} {'ivf/fl':>6} {'recall@10':>9} exact-agree")
    for n, t, recall, nlist, nprobe, agree in rows:
        fl = min(t["floor_np"], t["floor_tf"])
        print(f"{n:9d} {t['floor_np']:7.3f} {t['floor_tf']:7.3f} {t['numpy']:7.3f} {t['tf']:7.3f} {t['faiss']:7.3f} "
              f"{t['faiss_ivf']:7.3f} | {t['numpy'] / fl:6.2f} {t['tf'] / fl:6.2f} {t['faiss'] / fl:6.2f} "
              f"{t['faiss_ivf'] / fl:6.2f} {recall:9.3f} {agree}  (ivf nlist={nlist}, nprobe={nprobe})")


if __name__ == "__main__":
    timing.run(main)
