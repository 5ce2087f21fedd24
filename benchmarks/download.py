"""Download throughput against a loopback HTTP/1.1 server (keep-alive): images/s of
ctl_keras.download.download() with its shared connection pool ("pooled") and with a new connection
per image ("new connection each", what download did before), and the TCP connections each opened.

  python benchmarks/download.py [--images=400] [--workers=8] [--repeats=5] [--size_kb=50]

The server (a ThreadingHTTPServer on 127.0.0.1) serves --images JPEGs of about --size_kb KB (STL
images are ~50 KB) and counts accepted connections. Every run downloads them all into a fresh
directory; the two variants alternate run by run (timing.interleaved_times), medians over --repeats
after one untimed round. Loopback has no network latency and
no TLS: the saving of a reused connection against a real image host (TCP + TLS handshakes, ~1-3 round
trips each) is larger than here and is not measured.
"""

import http.server
import io
import shutil
import statistics
import sys
import tempfile
import threading

import numpy as np
from absl import flags
from PIL import Image

import timing
from ctl_keras.data import download

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 400, "Images per run.")
flags.DEFINE_integer("workers", 8, "download(workers=...).")
flags.DEFINE_integer("repeats", 5, "Timed runs; the median is reported.")
flags.DEFINE_integer("size_kb", 50, "Approximate JPEG size.")


def _jpeg(size_kb: int, seed: int = 0) -> bytes:
    """A noisy JPEG of roughly size_kb KB (noise does not compress)."""
    side = max(16, int((size_kb * 1024 / 0.6) ** 0.5))
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def get_request(self):
        self.connections += 1
        return super().get_request()


def serve(body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as image hosts do

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv):
    body = _jpeg(FLAGS.size_kb)
    server = serve(body)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    jobs = [(f"img{i:05d}", f"{base}/img{i:05d}.jpg") for i in range(FLAGS.images)]
    work = tempfile.mkdtemp(prefix="ctl_bench_download_")
    connections = {"pooled": [], "new connection each": []}

    def variant(name, reuse):
        def run():
            out = tempfile.mkdtemp(dir=work)
            before = server.connections
            result = download.download(jobs, out, workers=FLAGS.workers, retries=0, log_every=1e9,
                                       reuse_connections=reuse)
            connections[name].append(server.connections - before)
            assert result["ok"] == FLAGS.images, result
            shutil.rmtree(out)
        return run

    try:
        times = timing.interleaved_times({"pooled": variant("pooled", True),
                                          "new connection each": variant("new connection each", False)},
                                         FLAGS.repeats, warmup=1)
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{timing.machine_line()}; {FLAGS.images} images of {len(body) // 1024} KB, {FLAGS.workers} workers, "
          f"median of {FLAGS.repeats} interleaved runs")
    rates = {name: statistics.median(FLAGS.images / s for s in seconds) for name, seconds in times.items()}
    for name, seconds in times.items():
        print(f"  {name:20s} {rates[name]:6.0f} images/s (min {FLAGS.images / max(seconds):.0f}, "
              f"max {FLAGS.images / min(seconds):.0f}); TCP connections per run: "
              f"median {statistics.median(connections[name][1:]):.0f}")
    print(f"  pooled / new connection each: x{rates['pooled'] / rates['new connection each']:.2f}")


if __name__ == "__main__":
    timing.run(main, sys.argv)
