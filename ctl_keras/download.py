"""Download the images of a real dataset: parallel, retried, resumable, verified, atomic.

  python -m ctl_keras.download --dataset=fashion2 --pairs=fashion.json --out=images/
  python -m ctl_keras.download --dataset=fashion1 --street2shop_dir=street2shop/ --out=images/

A file already in `--out` that decodes is skipped, so re-running resumes. Each download is read
completely (a dropped connection raises), decoded fully with PIL (a truncated JPEG raises), written
to a temporary name in `--out` and renamed into place, so no partial image is ever left. 4xx answers
other than 408/429 are final; everything else is retried with exponential backoff plus jitter.
At the end: the line "ok N, failed N, skipped N" and `<out>/download_failures.tsv` (id, url, reason),
which is removed when nothing failed. The exit code is 0 whenever the run completes.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

from absl import app, flags, logging
from PIL import Image

from ctl_keras.data import urls

FAILURES_FILE = "download_failures.tsv"
_PART = ".part-"  # temporary files are "<name>.part-<random>" in the output directory
_USER_AGENT = "ctl_keras-downloader/1.0"


def is_valid_image(path: str) -> bool:
    """True if `path` is an image PIL decodes to the last pixel."""
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:  # PIL raises many types for bad files; any of them means "fetch it again"
        return False


class _Permanent(Exception):
    """A failure that retrying will not fix (404 and the like)."""


class _BadImage(Exception):
    """The body arrived but is not a complete image."""


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()  # raises IncompleteRead when the body is shorter than announced
    except urllib.error.HTTPError as e:
        if 400 <= e.code < 500 and e.code not in (408, 429):
            raise _Permanent(f"HTTP {e.code}") from None
        raise
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # OSError on a truncated file, UnidentifiedImageError on HTML error pages
    except Exception as e:
        raise _BadImage(f"image does not decode ({e}), {len(data)} bytes") from None
    return data


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, _BadImage):
        return str(error)
    if isinstance(error, http.client.IncompleteRead):
        return f"incomplete body ({len(error.partial)} bytes, {error.expected} more expected)"
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:200]  # one line, no tabs: it goes into a TSV


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}{_PART}{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_one(image_id: str, url: str, out_dir: str, *, retries: int, timeout: float,
                 backoff: float) -> tuple[str, str]:
    """("skipped"|"ok", "") or ("failed", reason) for one image."""
    path = os.path.join(out_dir, f"{image_id}.jpg")
    if os.path.exists(path) and is_valid_image(path):
        return "skipped", ""
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
        try:
            _write_atomically(path, _fetch(url, timeout))
            return "ok", ""
        except _Permanent as e:
            return "failed", str(e)
        except Exception as e:  # network, HTTP 5xx, decode: all worth another try
            reason = _reason(e)
    return "failed", f"{reason} (after {retries + 1} attempts)"


def _remove_stale_parts(out_dir: str) -> int:
    stale = [n for n in os.listdir(out_dir) if _PART in n]
    for name in stale:
        os.remove(os.path.join(out_dir, name))
    return len(stale)


def _write_failures(out_dir: str, failures: list[tuple[str, str, str]]) -> None:
    path = os.path.join(out_dir, FAILURES_FILE)
    if not failures:
        if os.path.exists(path):
            os.remove(path)
        return
    tmp = f"{path}{_PART}{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write("id\turl\treason\n")
        f.writelines(f"{i}\t{u}\t{r}\n" for i, u, r in sorted(failures))
    os.replace(tmp, path)


def download(jobs: list[tuple[str, str]], out_dir: str, *, workers: int = 16, retries: int = 4,
             timeout: float = 30.0, backoff: float = 1.0, log_every: float = 10.0) -> dict:
    """Fetches every (id, url) job into out_dir/<id>.jpg; returns {"ok", "failed", "skipped", "failures"}."""
    if workers < 1 or retries < 0 or timeout <= 0 or backoff < 0:
        raise ValueError(f"need workers >= 1, retries >= 0, timeout > 0, backoff >= 0; got "
                         f"{workers}, {retries}, {timeout}, {backoff}")
    os.makedirs(out_dir, exist_ok=True)
    if _remove_stale_parts(out_dir):
        logging.info("removed temporary files of an interrupted run")
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    failures: list[tuple[str, str, str]] = []
    lock, last_log = threading.Lock(), [time.monotonic()]

    def run(job):
        status, reason = download_one(*job, out_dir, retries=retries, timeout=timeout, backoff=backoff)
        with lock:
            counts[status] += 1
            if status == "failed":
                failures.append((job[0], job[1], reason))
            done = sum(counts.values())
            if time.monotonic() - last_log[0] >= log_every or done == len(jobs):
                last_log[0] = time.monotonic()
                logging.info("%d/%d images: ok %d, failed %d, skipped %d", done, len(jobs),
                             counts["ok"], counts["failed"], counts["skipped"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, job) for job in jobs]:
            future.result()
    _write_failures(out_dir, failures)
    return {**counts, "failures": sorted(failures)}


FLAGS = flags.FLAGS


def _define_flags():
    # Only when run as a script, so importing this module (tests) never clashes with other CLIs' flags.
    flags.DEFINE_string("dataset", None, "fashion1 (Street2Shop), fashion2 or home (STL).")
    flags.DEFINE_string("pairs", None, "fashion2/home: STL pairs file (fashion.json / home.json).")
    flags.DEFINE_string("street2shop_dir", None, "fashion1: Street2Shop root (photos/photos.txt, meta/json).")
    flags.DEFINE_string("out", None, "Directory the images are written to.")
    flags.DEFINE_string("url_prefix", urls.DEFAULT_STL_PREFIX, "fashion2/home: image URL prefix.")
    flags.DEFINE_string("url_rewrite", None, "fashion1: OLD=NEW rewrites URL prefixes (mirrors).")
    flags.DEFINE_bool("all_photos", False, "fashion1: every photo of photos.txt, not only referenced.")
    flags.DEFINE_integer("workers", 16, "Parallel downloads.")
    flags.DEFINE_integer("retries", 4, "Retries after the first attempt.")
    flags.DEFINE_float("timeout", 30.0, "Per-request timeout, seconds.")
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
    try:
        if len(argv) > 1:
            raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not FLAGS.dataset or not FLAGS.out:
            raise ValueError("--dataset and --out are required")
        jobs = _jobs()
        logging.info("%d images to fetch into %s", len(jobs), FLAGS.out)
        result = download(jobs, FLAGS.out, workers=FLAGS.workers, retries=FLAGS.retries,
                          timeout=FLAGS.timeout, backoff=FLAGS.backoff)
    except (ValueError, OSError) as e:  # one line, no traceback (absl's UsageError prints the docs)
        print(f"download: error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok {result['ok']}, failed {result['failed']}, skipped {result['skipped']}")
    if result["failed"]:
        print(f"failures listed in {os.path.join(FLAGS.out, FAILURES_FILE)}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
