"""The look service under load: throughput and p50/p99 at concurrency 1, 8, 32, micro-batching
on and off, against a bare batched scene-tower loop in the same run; and the latency a catalog swap adds.

    python benchmarks/serve_look.py                        # 5 categories x 200 products, 1/8/32 clients
    python benchmarks/serve_look.py --per_category=20000   # the 100k-product synthetic index

One run: the synthetic config (112 px, backbone_weights=none: timing does not depend on weight values),
an untrained model exported with a random catalog of unit embeddings, then `python -m ctl_keras.serve`
processes on loopback (batching on: --max_batch=32 --max_wait_ms=5; off: --max_batch=1). Each
measurement is a bounded loop: `--requests_per_client` POST /v1/look per client thread (keep-alive
connections, k=10, every category), after a warm-up. The bare loop calls the exported complete_look
signature in this process on a batch of the same JPEG, at the service's mean batch size at concurrency 32,
while no server runs (also before the servers start, at batch 1 and 32, to show drift). A request
that is not answered 200 is counted by status. Swap: clients at concurrency 8 while the index's next generation is written
(save_index) mid-run; p99 of the requests around the swap vs the steady p99 before it.
Clients run on the same machine as the server: they take CPU from it.

Backbone precision: `--backbone_precisions=float32,bfloat16` exports one tower per precision (the same
weights) and measures each in turn in this one run; every line names its precision and the CPU's bf16
flags, and the last lines give each precision's looks/s against float32's, with the agreement the export
recorded. `--modes=on --noswap` keeps such a comparison to the batching-on service and the bare loop:

    python benchmarks/serve_look.py --backbone_precisions=float32,bfloat16 --modes=on --noswap
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
import timing  # noqa: E402
from timing import wall_times  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("per_category", 200, "Catalog products per category (5 categories).")
flags.DEFINE_integer("requests_per_client", 12, "Requests each client thread sends per measurement.")
flags.DEFINE_string("concurrency", "1,8,32", "Client threads per measurement.")
flags.DEFINE_integer("repeats", 3, "Repetitions of each measurement (median reported).")
flags.DEFINE_list("backbone_precisions", ["float32"], "Export and measure a tower per backbone precision.")
flags.DEFINE_list("modes", ["on", "off"], "Micro-batching modes measured: on, off.")
flags.DEFINE_bool("swap", True, "Measure the latency a catalog swap adds (first precision only).")


def _build(tmp, precision="float32"):
    from ctl_keras.config import get_config
    from ctl_keras.model.ctl import build_ctl
    from ctl_keras.retrieval.index import CatalogIndex, save_index
    from ctl_keras.savedmodel import exporter, warmup

    config = get_config("synthetic")
    models = build_ctl(config)
    rng = np.random.default_rng(0)
    c, per = len(config.categories), FLAGS.per_category
    emb = rng.normal(size=(c * per, config.embedding_dim)).astype(np.float32)
    index = CatalogIndex(np.array([f"p{i}" for i in range(c * per)]), np.repeat(np.arange(c), per),
                         emb / np.linalg.norm(emb, axis=1, keepdims=True), config.categories,
                         {"model_fingerprint": exporter.model_fingerprint(models), "tower_version": 1})
    dirs = exporter.export_models(models, config, tmp, backbone_precision=precision)
    index.meta["export_dir"] = tmp
    save_index(index, os.path.join(tmp, "catalog"))
    return dirs["scene_tower"], os.path.join(tmp, "catalog"), warmup.example_images(config, seed=0)[0]


class Server:
    def __init__(self, stem, port, *args):
        self.port = port
        self.proc = subprocess.Popen([sys.executable, "-m", "ctl_keras.serve", f"--index={stem}", f"--port={port}",
                                      "--max_thumbnail_bytes=0", "--max_queue=256", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("server did not become ready")

    def batch_sizes(self) -> tuple[float, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics").read().decode()
        total = float(re.search(r"^ctl_batch_size_sum (\S+)", text, re.M).group(1))
        count = float(re.search(r"^ctl_batch_size_count (\S+)", text, re.M).group(1))
        return total, count

    def cpu_seconds(self) -> float:
        """The server process's user + system CPU time so far (/proc/PID/stat)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def _load(port, jpeg, clients, per_client, during=None):
    """Latencies (s, with their start times) of clients x per_client looks, and the wall time."""
    results, errors = [], []

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(per_client):
            start = time.perf_counter()
            conn.request("POST", "/v1/look?k=10", jpeg, {"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            response.read()
            results.append((start, time.perf_counter() - start))
            if response.status != 200:
                errors.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    if during is not None:
        during()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start, errors


def _pct(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def _measure(server, jpeg, clients):
    runs = []
    _load(server.port, jpeg, clients, 2)  # warm-up
    for _ in range(FLAGS.repeats):
        before, server_cpu, client_cpu = server.batch_sizes(), server.cpu_seconds(), time.process_time()
        results, wall, errors = _load(server.port, jpeg, clients, FLAGS.requests_per_client)
        client_cpu, server_cpu = time.process_time() - client_cpu, server.cpu_seconds() - server_cpu
        after = server.batch_sizes()
        lat = [d for _, d in results]
        runs.append({"rps": len(lat) / wall, "p50": _pct(lat, 50), "p99": _pct(lat, 99), "errors": Counter(errors),
                     "batch": (after[0] - before[0]) / max(after[1] - before[1], 1),
                     "server_ms": 1000 * server_cpu / len(lat), "client_ms": 1000 * client_cpu / len(lat)})
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "errors"}
    out["errors"] = dict(sum((r["errors"] for r in runs), Counter()))  # non-200 statuses over every repetition
    return out


def _bare(version_dir, jpeg, batch):
    import tensorflow as tf

    fn = tf.saved_model.load(version_dir).signatures["complete_look"]
    images = tf.constant([jpeg] * batch)
    for _ in range(2):  # tracing, caches: outside the CPU count
        fn(image_bytes=images)
    cpu = time.process_time()
    times = wall_times(lambda: fn(image_bytes=images), repeats=max(3, FLAGS.repeats * 2), warmup=0)
    cpu = time.process_time() - cpu
    return batch / statistics.median(times), 1000 * cpu / (batch * len(times))


def _swap(stem, jpeg, port):
    from ctl_keras.retrieval.index import load_index, save_index

    server = Server(stem, port, "--max_batch=32", "--max_wait_ms=5", "--watch_seconds=0.5")
    try:
        steady, _, _ = _load(port, jpeg, 8, FLAGS.requests_per_client * 2)
        index = load_index(stem)
        index.meta["generation"] = int(index.meta.get("generation", 1)) + 1
        swapped_at = []

        def write_next():
            time.sleep(1.0)
            save_index(index, stem)
            swapped_at.append(time.perf_counter())

        during, _, errors = _load(port, jpeg, 8, FLAGS.requests_per_client * 2, during=write_next)
        window = [d for s, d in during if swapped_at[0] - 1.0 <= s <= swapped_at[0] + 3.0]
        generation = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").read())["index_generation"]
        return {"steady_p99": _pct([d for _, d in steady], 99), "swap_p99": _pct(window, 99),
                "swap_requests": len(window), "errors": dict(Counter(errors)), "generation_after": generation}
    finally:
        server.stop()


def _precision(tmp, precision, levels, port, first):
    """Every figure of one backbone precision: (looks/s at each level with batching on, bare images/s)."""
    from ctl_keras.savedmodel import exporter

    out = os.path.join(tmp, precision)
    version_dir, stem, jpeg = _build(out, precision)
    meta = exporter.read_meta(version_dir)
    a = meta.get("backbone_agreement")
    tag = f"[{meta['backbone_precision']}]"
    if a:
        print(f"{tag} export agreement ({a['sample']}): query cosine min {a['query_cosine_min']:.6f}, product "
              f"cosine min {a['product_cosine_min']:.6f}, top-10 overlap mean {a['top_k_overlap_mean']:.2f} "
              f"(min {a['top_k_overlap_min']}), max |delta d*| {a['max_abs_delta_d_star']:.3g}", flush=True)
    table = {}
    top = max(levels)
    bare_before = {b: _bare(version_dir, jpeg, b) for b in sorted({1, min(32, top)})}
    for mode, args in (("on", ["--max_batch=32", "--max_wait_ms=5"]), ("off", ["--max_batch=1"])):
        if mode not in FLAGS.modes:
            continue
        server = Server(stem, port, *args)
        try:
            for clients in levels:
                table[(mode, clients)] = r = _measure(server, jpeg, clients)
                print(f"{tag} batching {mode:3s} c={clients:2d}: {r['rps']:6.1f} looks/s  p50 {r['p50']:7.1f} ms  "
                      f"p99 {r['p99']:7.1f} ms  mean batch {r['batch']:4.1f}  CPU ms/look: server "
                      f"{r['server_ms']:.1f}, clients {r['client_ms']:.1f}  errors {r['errors']} | "
                      f"{timing.machine_line()}", flush=True)
        finally:
            server.stop()
    mode = "on" if "on" in FLAGS.modes else "off"
    batch = max(1, round(table[(mode, top)]["batch"]))
    after = [_bare(version_dir, jpeg, batch) for _ in range(3)]
    bare, bare_ms = statistics.median(a[0] for a in after), statistics.median(a[1] for a in after)
    print(f"{tag} bare complete_look loop before the servers: " +
          ", ".join(f"batch {b}: {v[0]:.1f} images/s ({v[1]:.1f} CPU ms/image)" for b, v in bare_before.items()))
    print(f"{tag} bare complete_look loop after, batch {batch} (the service's mean batch at c={top}): {bare:6.1f} "
          f"images/s ({bare_ms:.1f} CPU ms/image); service at c={top} batching {mode}: "
          f"{table[(mode, top)]['rps'] / bare:.2f}x of it | {timing.machine_line()}")
    if 8 in levels and mode == "on":
        print(f"{tag} p99/p50 at c=8 batching on: {table[('on', 8)]['p99'] / table[('on', 8)]['p50']:.2f}")
    if first and FLAGS.swap:
        s = _swap(stem, jpeg, port + 1)
        print(f"{tag} swap under load (c=8): steady p99 {s['steady_p99']:.1f} ms, p99 around the swap "
              f"{s['swap_p99']:.1f} ms ({s['swap_requests']} requests, {s['swap_p99'] / s['steady_p99']:.2f}x), "
              f"failed {s['errors']}, generation after {s['generation_after']}")
    return {c: table[(mode, c)]["rps"] for c in levels}, bare


def main(argv):
    del argv
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    levels = [int(c) for c in FLAGS.concurrency.split(",")]
    port = 18_000 + os.getpid() % 1000
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, precision in enumerate(FLAGS.backbone_precisions):
            results[precision] = _precision(tmp, precision, levels, port + 2 * i, first=i == 0)
    base = results.get("float32")
    if base and len(results) > 1:
        for precision, (rps, bare) in results.items():
            print(f"{precision} vs float32: looks/s " + ", ".join(f"c={c} {rps[c] / base[0][c]:.2f}x" for c in levels)
                  + f"; bare loop {bare / base[1]:.2f}x | {timing.machine_line()}")

if __name__ == "__main__":
    app.run(main)
