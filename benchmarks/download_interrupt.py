"""How fast `ctl_keras.download` stops on SIGTERM / SIGINT while every worker hangs on a slow server.

    python benchmarks/download_interrupt.py [--repeats=5]

A loopback HTTP server sends each image one byte per 100 ms (minutes per file, every read well under
--timeout=30). The CLI runs with 4 workers on 4 such files; once all 4 requests have arrived the
benchmark sends the signal and measures signal → process exit. Prints the median over the repeats.
Before the fix the process waited for every trickle to end (minutes), whatever the signal.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Measurements per signal.")


class _Trickle(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with self.server.lock:
            self.server.hits += 1
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            while not self.server.closing.is_set():
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client went away: expected
            pass


def _once(base: str, server, signum: int, tmp: str) -> float:
    pairs = os.path.join(tmp, "pairs.json")
    with open(pairs, "w") as f:
        json.dump([{"scene": f"scene{i}0", "product": f"prod{i}00", "bbox": [0, 0, 1, 1]} for i in (1, 2)], f)
    server.hits = 0
    proc = subprocess.Popen([sys.executable, "-m", "ctl_keras.download", "--dataset=home", f"--pairs={pairs}",
                             f"--out={tmp}/out", f"--url_prefix={base}", "--workers=4", "--timeout=30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while server.hits < 4:
        time.sleep(0.02)
    start = time.monotonic()
    proc.send_signal(signum)
    try:
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - start


def main(argv):
    del argv
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads, server.lock, server.closing, server.hits = True, threading.Lock(), threading.Event(), 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for name, signum in (("SIGTERM", signal.SIGTERM), ("SIGINT", signal.SIGINT)):
            seconds = []
            for _ in range(FLAGS.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    seconds.append(_once(base, server, signum, tmp))
            print(f"{name}: signal -> exit median {statistics.median(seconds):.2f} s "
                  f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {FLAGS.repeats} runs)")
    finally:
        server.closing.set()
        server.shutdown()


if __name__ == "__main__":
    app.run(main)
