"""`ctl serve --export_dir=E --index=STEM --port=P`: the look as an HTTP service.

Loads the index's generation and its scene tower in the background (/healthz answers at once,
/readyz once loaded; a first load that fails ends the process with one line and exit 1), then
serves on uvicorn with the connection bounds of connections.py (--head_timeout, --body_timeout,
--max_connections, --linger_seconds). SIGTERM/Ctrl-C: stop accepting, answer requests still
uploading 503, finish the ones being answered (at most --drain_seconds), exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import threading

# Before numpy loads: the rank thread's matmuls run beside the tower's TensorFlow call, which already
# uses every core, so OpenBLAS's own worker threads only contend with it (and spin while idle). One BLAS
# thread gave 1.13-1.19x the looks/s at 100k products and 32 clients.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from absl import flags  # noqa: E402

from ctl_keras import cli  # noqa: E402
from ctl_keras.cli import options as shared_flags  # noqa: E402
from ctl_keras.service.options import ServeOptions  # noqa: E402

FLAGS = flags.FLAGS
log = logging.getLogger("ctl_keras.serve")
# Descriptors kept for the rest of the process under the default connection cap: TensorFlow, the
# index files, TF Serving channels and the listening socket use a few dozen; the rest is margin.
FD_RESERVE = 256


def define_flags() -> None:
    shared_flags.define("export_dir", "index", "backend", help_texts={
        "export_dir": "Export dir (scene_tower/...); default: the one the index records.",
        "index": "Index path stem (STEM.json + its generation's files); watched for updates.",
        "backend": "Search backend (default: what the index holds)."})
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (loopback by default).")
    flags.DEFINE_integer("port", 8080, "Port to listen on.", lower_bound=0)
    flags.DEFINE_string("tower", "savedmodel", "savedmodel (in process), grpc://host:8500 or http://host:8501 "
                        "(TF Serving's scene_tower model, the version the index was embedded with).")
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
    flags.DEFINE_integer("max_connections", 0, "Most open client connections; above it the oldest idle one is "
                         "closed, or the new one refused (503). 0: min(1024, `ulimit -n` - 256).", lower_bound=0)
    flags.DEFINE_float("head_timeout", 10.0, "Seconds for a request's line and headers to arrive (408, closed).",
                       lower_bound=0.1)
    flags.DEFINE_float("body_timeout", 60.0, "Seconds for a request's whole body to arrive (408, closed).",
                       lower_bound=0.1)
    flags.DEFINE_float("keep_alive_seconds", 5.0, "Close a kept-alive connection idle this long.", lower_bound=0.1)
    flags.DEFINE_integer("backlog", FD_RESERVE // 2, "Listen queue, and most connections accepted at once: kept "
                         "under the descriptors the default cap leaves free, so a burst cannot exhaust them.",
                         lower_bound=1)
    flags.DEFINE_float("linger_seconds", 10.0, "After an early answer (413, 401, ...), read and drop the rest of "
                       "the body this long at most so the client reads the answer.", lower_bound=0)


def connection_cap(asked: int) -> int:
    """--max_connections, or by default what `ulimit -n` leaves after FD_RESERVE descriptors (at most 1024)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (1 << 20) if soft == resource.RLIM_INFINITY else soft - FD_RESERVE
    if not asked:
        return max(16, min(1024, room))
    if asked > room:
        log.warning("--max_connections=%d leaves fewer than %d of the %d file descriptors `ulimit -n` allows to "
                    "the rest of the process: accepts will fail when they run out", asked, FD_RESERVE, soft)
    return asked


def server_config(opts: ServeOptions, app, metrics):
    """uvicorn, with the connection bounds of connections.py and rate-limited server log lines."""
    import uvicorn

    from ctl_keras.service.connections import Limits, protocol_class
    from ctl_keras.service.log_limits import RateLimitFilter, install_loop_handler

    limits = Limits(connection_cap(opts.max_connections), opts.head_timeout, opts.body_timeout,
                    opts.linger_seconds, metrics)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            install_loop_handler(asyncio.get_running_loop(), metrics)
            await super().startup(sockets)

    config = uvicorn.Config(app, host=opts.host, port=opts.port, log_level="warning", access_log=False,
                            http=protocol_class(limits), timeout_keep_alive=opts.keep_alive_seconds,
                            backlog=opts.backlog, timeout_graceful_shutdown=opts.drain_seconds)
    logging.getLogger("uvicorn.error").addFilter(RateLimitFilter())  # "Invalid HTTP request received." etc.
    if opts.host not in ("127.0.0.1", "localhost", "::1") and not opts.api_key:
        log.warning("listening on %s without --api_key_file: anyone who can reach port %d can run looks, "
                    "reload the index and read /metrics", opts.host, opts.port)
    return Server(config)


def main(argv):
    from ctl_keras.service.app import build_app
    from ctl_keras.service.generation import Live
    from ctl_keras.service.metrics import Metrics

    opts = ServeOptions.from_flags(FLAGS)  # every value checked: one line naming the flag
    logging.basicConfig(level=logging.INFO, format="serve %(levelname)s %(message)s")
    metrics = Metrics()
    live = Live(opts, metrics)
    app = build_app(opts, live, metrics)
    server = server_config(opts, app, metrics)
    failure = []

    def first_load():
        outcome = live.reload(force=True)
        if live.current is None:
            failure.append(outcome.removeprefix("refused: "))
            server.should_exit = True
            return
        live.start_watching(opts.watch_seconds)

    threading.Thread(target=first_load, name="first-load", daemon=True).start()
    # uvicorn catches SIGTERM/SIGINT itself (drain, then exit) and re-raises them to the handler it
    # found when done: a no-op here, so a drained shutdown ends with exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    server.run()
    live.stop()
    if failure:
        raise ValueError(f"cannot serve --index={opts.index}: {failure[0]}")
    log.info("drained, exiting")
    os._exit(0)  # skip TF's slow interpreter teardown; every answer is sent


if __name__ == "__main__":
    cli.run(main, "serve", define_flags=define_flags)
