"""One builder, many readers: the feature cache under multi-worker training.

With data_dir on storage every worker sees, the writing worker builds the cache and the others call
`wait_until_built`. The cache directory appears in one rename with its manifest.json inside (build.py),
so that manifest is the completion marker: nobody reads a half-written cache. While building,
`<cache_dir>.building` exists and the builder touches it every few seconds, so a waiter can tell a slow
build from a dead builder (clocks of the machines are assumed roughly in sync, as NFS needs anyway).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from absl import logging

BUILDING_SUFFIX = ".building"
HEARTBEAT_SECONDS = 2.0


class Heartbeat:
    """Keeps `<cache_dir>.building` fresh (mtime) while a build runs; removed when it ends either way."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "w") as f:
            f.write(f"{socket.gethostname()} pid {os.getpid()}\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def wait_until_built(cache_dir, want: dict, timeout: float, poll: float = 1.0) -> None:
    """Block until `cache_dir` holds a complete cache of identity `want` (another worker builds it).

    Raises RuntimeError when for `timeout` seconds no such cache appeared and no build showed progress
    (no `.building` marker touched within `timeout`): the builder died or never started.
    """
    cache_dir = os.path.abspath(os.fspath(cache_dir))
    manifest, marker = os.path.join(cache_dir, "manifest.json"), cache_dir + BUILDING_SUFFIX
    last_progress = time.time()
    logging.info("feature cache: waiting for another worker to build %s", cache_dir)
    while True:
        try:
            with open(manifest) as f:
                if json.load(f).get("identity") == want:
                    return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        try:
            last_progress = max(last_progress, os.path.getmtime(marker))
        except FileNotFoundError:
            pass
        if time.time() - last_progress > timeout:
            raise RuntimeError(
                f"waited {timeout:.0f} s for the feature cache {cache_dir}, and no build made progress "
                f"(no fresh {os.path.basename(marker)}): did the writing worker fail? It builds the cache "
                "when it runs with --feature_cache too")
        time.sleep(poll)
