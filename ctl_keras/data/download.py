"""Download images: parallel, retried, resumable, verified, atomic (`ctl download` is the command:
ctl_keras/cli/download.py says what it guarantees)."""

from __future__ import annotations

import contextlib
import os
import queue
import random
import threading

from absl import logging

from ctl_keras.utils import atomic
from ctl_keras.utils import progress
from ctl_keras.data.fetch import (DEFAULT_DEADLINE, DEFAULT_MAX_BYTES, Permanent, Stopped, fetch, is_valid_image,
                             new_pool, reason as failure_reason)

__all__ = ["download", "download_one", "is_valid_image", "FAILURES_FILE"]

FAILURES_FILE = "download_failures.tsv"


def download_one(image_id: str, url: str, out_dir: str, *, retries: int, timeout: float, backoff: float,
                 deadline: float = DEFAULT_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES,
                 stop: threading.Event | None = None, writing: threading.Semaphore | None = None,
                 pool=None) -> tuple[str, str]:
    """("skipped"|"ok", "") or ("failed", reason) for one image; ("stopped", "") when `stop` is set.

    `writing` is held while the file is written, so an interrupted run can wait for writes to end.
    `pool`: fetch.new_pool()'s connection pool (None: a new connection per attempt).
    """
    stop = stop or threading.Event()
    path = os.path.join(out_dir, f"{image_id}.jpg")
    if os.path.exists(path) and is_valid_image(path):
        return "skipped", ""
    reason = ""
    for attempt in range(retries + 1):
        if attempt and stop.wait(backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)):
            return "stopped", ""
        try:
            data = fetch(url, timeout, deadline, max_bytes, stop, pool)
            with writing or contextlib.nullcontext():
                if stop.is_set():
                    return "stopped", ""
                atomic.write_bytes(path, data, durable=False)  # hot path; a rerun re-checks every file
            return "ok", ""
        except Stopped:
            return "stopped", ""
        except Permanent as e:
            return "failed", str(e)
        except Exception as e:  # network, HTTP 5xx, decode, deadline: all worth another try
            reason = failure_reason(e)
    return "failed", f"{reason} (after {retries + 1} attempts)"


def _remove_stale_parts(out_dir: str) -> int:
    stale = [n for n in os.listdir(out_dir) if atomic.is_temp_name(n)]
    for name in stale:
        os.remove(os.path.join(out_dir, name))
    return len(stale)


def _write_failures(out_dir: str, failures: list[tuple[str, str, str]]) -> None:
    path = os.path.join(out_dir, FAILURES_FILE)
    if not failures:
        if os.path.exists(path):
            os.remove(path)
        return
    atomic.write_text(path, "id\turl\treason\n" + "".join(f"{i}\t{u}\t{r}\n" for i, u, r in sorted(failures)))


def download(jobs: list[tuple[str, str]], out_dir: str, *, workers: int = 16, retries: int = 4,
             timeout: float = 30.0, backoff: float = 1.0, log_every: float = 10.0,
             deadline: float = DEFAULT_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES,
             reuse_connections: bool = True) -> dict:
    """Fetches every (id, url) job into out_dir/<id>.jpg; returns {"ok", "failed", "skipped", "failures"}.

    The threads share one pool of keep-alive connections per host (`reuse_connections=False`: a new
    connection per image, as before; benchmarks/download.py compares the two).

    KeyboardInterrupt (Ctrl-C; cli.Terminated for SIGTERM) stops the workers: files being written
    are finished, nothing new starts, no failure list is written, and the interrupt is re-raised.
    """
    if workers < 1 or retries < 0 or timeout <= 0 or backoff < 0 or deadline <= 0 or max_bytes < 1:
        raise ValueError(f"need workers >= 1, retries >= 0, timeout > 0, backoff >= 0, deadline > 0, "
                         f"max_bytes >= 1; got {workers}, {retries}, {timeout}, {backoff}, {deadline}, {max_bytes}")
    os.makedirs(out_dir, exist_ok=True)
    if _remove_stale_parts(out_dir):
        logging.info("removed temporary files of an interrupted run")
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    failures: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    # A bar with rate and ETA on a terminal, else one log line per log_every seconds (ctl_keras.utils.progress).
    bar = progress.Progress(total=len(jobs), desc="download", unit="image", log_every=log_every)
    stop, writing = threading.Event(), threading.Semaphore(workers)
    pool = new_pool(workers) if reuse_connections else None
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)

    def work():
        while not stop.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            status, reason = download_one(*job, out_dir, retries=retries, timeout=timeout, backoff=backoff,
                                          deadline=deadline, max_bytes=max_bytes, stop=stop, writing=writing,
                                          pool=pool)
            if status == "stopped":
                return
            with lock:
                counts[status] += 1
                if status == "failed":
                    failures.append((job[0], job[1], reason))
                bar.update(1, **counts)

    # Daemon threads, not a ThreadPoolExecutor: its threads are joined at exit, so an interrupted
    # run would wait for every blocked socket read (up to --timeout each).
    threads = [threading.Thread(target=work, daemon=True, name=f"download-{i}")
               for i in range(min(workers, max(1, len(jobs))))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # a timed join lets the main thread handle SIGINT/SIGTERM
    except KeyboardInterrupt:
        stop.set()
        for _ in range(workers):  # wait for writes in progress (local and quick), then leave
            writing.acquire()
        bar.close()
        with lock:
            logging.warning("interrupted after ok %d, failed %d, skipped %d of %d images; run the same "
                            "command again to resume", counts["ok"], counts["failed"], counts["skipped"],
                            len(jobs))
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.clear()
    _write_failures(out_dir, failures)
    return {**counts, "failures": sorted(failures)}
