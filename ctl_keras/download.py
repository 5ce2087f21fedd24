"""Download the images of a real dataset: parallel, retried, resumable, verified, atomic.

  python -m ctl_keras.download --dataset=fashion2 --pairs=fashion.json --out=images/
  python -m ctl_keras.download --dataset=fashion1 --street2shop_dir=street2shop/ --out=images/

A file already in `--out` that decodes is skipped, so re-running resumes. Each download is read
completely (a dropped connection raises), decoded fully with PIL (a truncated JPEG raises), written
to a temporary name in `--out` and renamed into place, so no partial image is ever left. 4xx answers
other than 408/429 are final; everything else is retried with exponential backoff plus jitter.
While it runs: a progress bar with rate and ETA on a terminal, one log line per ~10 s otherwise
(ctl_keras/progress.py). At the end: the line "ok N, failed N, skipped N" and `<out>/download_failures.tsv` (id, url, reason),
which is removed when nothing failed. The exit code is 0 whenever the run completes.

Bounds: `--timeout` limits each connect and socket read; `--deadline` limits one attempt at one file
as a whole (a server trickling a byte per second otherwise holds a worker forever), and `--max_bytes`
its body (announced Content-Length or bytes actually received; too large is final, not retried).
Ctrl-C or SIGTERM stop the run within about a second: no new file is started, the files being
written are finished (each write is atomic), the process exits 130/143 and a re-run resumes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import threading

from absl import flags, logging

from ctl_keras import atomic, cli, progress
from ctl_keras.data import urls
from ctl_keras.fetch import (DEFAULT_DEADLINE, DEFAULT_MAX_BYTES, Permanent, Stopped, fetch, is_valid_image,
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
    # A bar with rate and ETA on a terminal, else one log line per log_every seconds (ctl_keras.progress).
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


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Only when run as a command, so importing this module never clashes with other CLIs' flags."""
    flags.DEFINE_string("dataset", None, "fashion1 (Street2Shop), fashion2 or home (STL).")
    flags.DEFINE_string("pairs", None, "fashion2/home: STL pairs file (fashion.json / home.json).")
    flags.DEFINE_string("street2shop_dir", None, "fashion1: Street2Shop root (photos/photos.txt, meta/json).")
    flags.DEFINE_string("out", None, "Directory the images are written to.")
    flags.DEFINE_string("url_prefix", urls.DEFAULT_STL_PREFIX, "fashion2/home: image URL prefix.")
    flags.DEFINE_string("url_rewrite", None, "fashion1: OLD=NEW rewrites URL prefixes (mirrors).")
    flags.DEFINE_bool("all_photos", False, "fashion1: every photo of photos.txt, not only referenced.")
    flags.DEFINE_integer("workers", 16, "Parallel downloads.")
    flags.DEFINE_integer("retries", 4, "Retries after the first attempt.")
    flags.DEFINE_float("timeout", 30.0, "Seconds one connect or socket read may wait.")
    flags.DEFINE_float("deadline", DEFAULT_DEADLINE, "Seconds one attempt at one file may take in all "
                       "(checked between reads, so at most deadline + timeout).")
    flags.DEFINE_integer("max_bytes", DEFAULT_MAX_BYTES, "Largest image body accepted, bytes; larger ones fail "
                         "without retry.")
    flags.DEFINE_float("backoff", 1.0, "Base retry delay, seconds; doubles each retry, with +-50% jitter.")


def _jobs() -> list[tuple[str, str]]:
    name = FLAGS.dataset
    if name == "fashion1":
        if not FLAGS.street2shop_dir:
            raise ValueError("--dataset=fashion1 needs --street2shop_dir")
        rewrite = None
        if FLAGS.url_rewrite:
            old, sep, new = FLAGS.url_rewrite.partition("=")
            if not sep or not old:
                raise ValueError(f"--url_rewrite must be OLD=NEW, got {FLAGS.url_rewrite!r}")
            rewrite = (old, new)
        jobs, bad = urls.street2shop_jobs(FLAGS.street2shop_dir, rewrite, FLAGS.all_photos)
    elif name in urls.STL_DATASETS:
        if not FLAGS.pairs:
            raise ValueError(f"--dataset={name} needs --pairs")
        jobs, bad = urls.stl_jobs(FLAGS.pairs, FLAGS.url_prefix)
    elif name == "synthetic":
        raise ValueError("the synthetic dataset is generated locally; there is nothing to download")
    else:
        raise ValueError(f"unknown --dataset={name!r}; expected fashion1, fashion2 or home")
    if bad:
        logging.warning("skipped %d malformed rows/lines of the input", bad)
    return jobs


def main(argv):
    cli.require("dataset", "out")
    cli.check_output_dir(FLAGS.out, "out")
    jobs = _jobs()
    logging.info("%d images to fetch into %s", len(jobs), FLAGS.out)
    result = download(jobs, FLAGS.out, workers=FLAGS.workers, retries=FLAGS.retries, timeout=FLAGS.timeout,
                      backoff=FLAGS.backoff, deadline=FLAGS.deadline, max_bytes=FLAGS.max_bytes)
    print(f"ok {result['ok']}, failed {result['failed']}, skipped {result['skipped']}")
    if result["failed"]:
        print(f"failures listed in {os.path.join(FLAGS.out, FAILURES_FILE)}")


if __name__ == "__main__":
    cli.run(main, "download", define_flags=define_flags)
