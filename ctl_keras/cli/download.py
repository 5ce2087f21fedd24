"""Download the images of a real dataset: parallel, retried, resumable, verified, atomic.

  ctl download --dataset=fashion2 --pairs=fashion.json --out=images/
  ctl download --dataset=fashion1 --street2shop_dir=street2shop/ --out=images/

A file already in `--out` that decodes is skipped, so re-running resumes. Each download is read
completely (a dropped connection raises), decoded fully with PIL (a truncated JPEG raises), written
to a temporary name in `--out` and renamed into place, so no partial image is ever left. 4xx answers
other than 408/429 are final; everything else is retried with exponential backoff plus jitter.
While it runs: a progress bar with rate and ETA on a terminal, one log line per ~10 s otherwise
(ctl_keras/utils/progress.py). At the end: the line "ok N, failed N, skipped N" and `<out>/download_failures.tsv` (id, url, reason),
which is removed when nothing failed. The exit code is 0 whenever the run completes.

Bounds: `--timeout` limits each connect and socket read; `--deadline` limits one attempt at one file
as a whole (a server trickling a byte per second otherwise holds a worker forever), and `--max_bytes`
its body (announced Content-Length or bytes actually received; too large is final, not retried).
Ctrl-C or SIGTERM stop the run within about a second: no new file is started, the files being
written are finished (each write is atomic), the process exits 130/143 and a re-run resumes.
"""

from __future__ import annotations

import os

from absl import flags, logging

from ctl_keras import cli
from ctl_keras.cli import options
from ctl_keras.data import urls
from ctl_keras.data.download import FAILURES_FILE, download
from ctl_keras.data.fetch import DEFAULT_DEADLINE, DEFAULT_MAX_BYTES

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Only when run as a command, so importing this module never clashes with other CLIs' flags."""
    options.define("dataset", "pairs", "street2shop_dir", "out", "workers", defaults={"workers": 16}, help_texts={
        "dataset": "fashion1 (Street2Shop), fashion2 or home (STL).",
        "pairs": "fashion2/home: STL pairs file (fashion.json / home.json).",
        "street2shop_dir": "fashion1: Street2Shop root (photos/photos.txt, meta/json).",
        "out": "Directory the images are written to.",
        "workers": "Parallel downloads."})
    flags.DEFINE_string("url_prefix", urls.DEFAULT_STL_PREFIX, "fashion2/home: image URL prefix.")
    flags.DEFINE_string("url_rewrite", None, "fashion1: OLD=NEW rewrites URL prefixes (mirrors).")
    flags.DEFINE_bool("all_photos", False, "fashion1: every photo of photos.txt, not only referenced.")
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
