"""`python -m ctl_keras.serve --export_dir=E --index=STEM --port=P`: the look as an HTTP service.

Loads the index's generation and its scene tower in the background (/healthz answers at once,
/readyz once loaded; a first load that fails ends the process with one line and exit 1), then
serves on uvicorn. SIGTERM/Ctrl-C: stop accepting, finish in-flight requests (at most
--drain_seconds), exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import types

# Before numpy loads: the rank thread's matmuls run beside the tower's TensorFlow call, which already
# uses every core, so OpenBLAS's own worker threads only contend with it (and spin while idle). One BLAS
# thread gave 1.13-1.19x the looks/s at 100k products and 32 clients (BUILD_NOTES, issue 20).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import flags  # noqa: E402

from ctl_keras import cli  # noqa: E402

FLAGS = flags.FLAGS
OPTIONS = ("export_dir", "index", "tower", "backend", "product_images", "max_thumbnail_bytes", "max_batch",
           "max_wait_ms", "max_queue", "deadline_ms", "max_body_bytes", "max_pixels", "max_k")


def define_flags() -> None:
    flags.DEFINE_string("export_dir", None, "Export dir (scene_tower/...); default: the one the index records.")
    flags.DEFINE_string("index", None, "Index path stem (STEM.json + its generation's files); watched for updates.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (loopback by default).")
    flags.DEFINE_integer("port", 8080, "Port to listen on.", lower_bound=0)
    flags.DEFINE_string("tower", "savedmodel", "savedmodel (in process), grpc://host:8500 or http://host:8501 "
                        "(TF Serving's scene_tower model, the version the index was embedded with).")
    flags.DEFINE_string("backend", None, "Search backend (default: what the index holds).")
    flags.DEFINE_string("product_images", None, "Catalog source for the page's thumbnails (default: the index's).")
    flags.DEFINE_integer("max_thumbnail_bytes", 256 << 20, "Keep thumbnails in memory up to this many bytes.")
    flags.DEFINE_integer("max_batch", 8, "Micro-batching: most images per scene-tower call (1: no batching).",
                         lower_bound=1)
    flags.DEFINE_float("max_wait_ms", 5.0, "Micro-batching: longest wait for a batch to fill.", lower_bound=0)
    flags.DEFINE_integer("max_queue", 64, "Requests waiting or in a tower call before 503.", lower_bound=1)
    flags.DEFINE_integer("deadline_ms", 10_000, "Per-request deadline (504); a request may ask less (timeout_ms).",
                         lower_bound=1)
    flags.DEFINE_integer("max_body_bytes", 8 << 20, "Largest request body (413).", lower_bound=1)
    flags.DEFINE_integer("max_pixels", None, "Largest image in pixels (413); default: the export's limit.")
    flags.DEFINE_integer("max_k", 100, "Largest k (422 above).", lower_bound=1)
    flags.DEFINE_string("api_key_file", None, "File holding the API key the POST routes require (401 otherwise).")
    flags.DEFINE_float("watch_seconds", 2.0, "Poll STEM for a new generation this often (0: only /admin/reload).")
    flags.DEFINE_float("drain_seconds", 20.0, "On SIGTERM, wait at most this long for in-flight requests.")


def options() -> types.SimpleNamespace:
    opts = types.SimpleNamespace(**{name: getattr(FLAGS, name) for name in OPTIONS}, api_key=None)
    if FLAGS.api_key_file:
        with open(FLAGS.api_key_file) as f:
            opts.api_key = f.read().strip()
        if not opts.api_key:
            raise ValueError(f"--api_key_file={FLAGS.api_key_file} is empty")
    return opts


def main(argv):
    import uvicorn

    from ctl_keras.serve.app import build_app
    from ctl_keras.serve.generation import Live
    from ctl_keras.serve.metrics import Metrics

    cli.require("index")
    opts = options()
    logging.basicConfig(level=logging.INFO, format="serve %(levelname)s %(message)s")
    metrics = Metrics()
    live = Live(opts, metrics)
    app = build_app(opts, live, metrics)
    server = uvicorn.Server(uvicorn.Config(app, host=FLAGS.host, port=FLAGS.port, log_level="warning",
                                           timeout_graceful_shutdown=FLAGS.drain_seconds, access_log=False))
    failure = []

    def first_load():
        outcome = live.reload(force=True)
        if live.current is None:
            failure.append(outcome.removeprefix("refused: "))
            server.should_exit = True
            return
        live.start_watching(FLAGS.watch_seconds)

    threading.Thread(target=first_load, name="first-load", daemon=True).start()
    # uvicorn catches SIGTERM/SIGINT itself (drain, then exit) and re-raises them to the handler it
    # found when done: a no-op here, so a drained shutdown ends with exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    server.run()
    live.stop()
    if failure:
        raise ValueError(f"cannot serve --index={FLAGS.index}: {failure[0]}")
    logging.getLogger("ctl_keras.serve").info("drained, exiting")
    os._exit(0)  # skip TF's slow interpreter teardown; every answer is sent


if __name__ == "__main__":
    cli.run(main, "serve", define_flags=define_flags)
