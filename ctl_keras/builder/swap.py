"""Staging directory -> the dataset directory, so an interrupted rebuild never costs the old dataset.

The pipeline writes everything into `<out>/.staging-<id>/` (same filesystem, so moves are renames).
Only once it is complete: record the files about to be owned (journal), drop the old manifest, move
the new files in, delete the old build's files that the new one does not have, write the manifest
last. Until then the previous dataset stays complete and readable. Files are deleted only when a
manifest (or the journal of an interrupted swap) lists them: a user's own files are never touched.

One build at a time per local directory (`exclusive_build`): two builds started together used to
remove each other's staging directory and interleave their swaps, leaving shards without a manifest.
The second refuses at once, naming the holder's pid, rather than waiting (a scheduled job fails
visibly and reruns). Locks are flocks, dropped by the kernel when their process dies (even by
SIGKILL): a killed build's lock file is taken over. A staging directory's marker is flocked by its
build too, so clean-up removes only the staging directories of processes that are gone. On an object
store (gs://) there is no lock: run one build per --out there.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Iterator

from ctl_keras.utils import atomic
from ctl_keras.builder import files
from ctl_keras.data import encoding as tfrecords

STAGING_PREFIX = ".staging-"
MARKER = "CTL_KERAS_STAGING"  # inside a staging directory: proves this builder made it (holds its pid)
JOURNAL = ".build-owned.json"  # exists only while a swap is in progress
LOCK = ".build.lock"  # exists only while a build runs (or after one was killed); holds its pid
_held: dict[str, atomic.ExclusiveLock] = {}  # staging directory -> the flock on its marker


@contextlib.contextmanager
def exclusive_build(out_dir: str) -> Iterator[bool]:
    """Hold `out_dir`'s build lock for the block (RuntimeError naming the holder's pid if another build
    does); yields True when `out_dir` did not exist. Such a directory, left empty, is removed after."""
    created = not files.exists(out_dir)
    if files.is_url(out_dir):
        yield created
        return

    def busy(holder: str) -> RuntimeError:
        return RuntimeError(f"another build (pid {holder}) is writing {out_dir}; wait for it or choose another --out")

    try:
        # Removed on release: a finished build leaves no lock file among the dataset's files.
        with atomic.ExclusiveLock(os.path.join(out_dir, LOCK), busy, remove_on_exit=True):
            yield created
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)  # only when empty: a failed first build leaves nothing behind


def new_staging(out_dir: str) -> str:
    """A fresh staging directory with its marker, which this process holds locked until remove_staging."""
    staging = files.join(out_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    files.makedirs(staging)
    marker = files.join(staging, MARKER)
    try:  # a signal while the marker is written (an fsync: milliseconds) must not leave the dir behind
        if files.is_url(out_dir):
            files.write_bytes(marker, b"a ctl_keras build in progress; safe to delete\n")
        else:
            _held[staging] = atomic.ExclusiveLock(marker, _Owned).__enter__()  # a new name: never busy
    except BaseException:
        files.delete([staging])
        raise
    return staging


def remove_staging(staging: str) -> None:
    try:
        files.delete([staging])
    finally:
        lock = _held.pop(staging, None)
        if lock is not None:
            lock.__exit__(None, None, None)


class _Owned(Exception):
    """A staging marker another live process holds."""


def remove_abandoned_staging(out_dir: str) -> None:
    """Staging directories (they carry our marker) whose build is gone: a marker nobody holds locked.
    On an object store, every marked one (no locks there)."""
    for marker in files.matching(files.join(out_dir, f"{STAGING_PREFIX}*", MARKER)):
        staging = files.parent(marker)
        if not files.is_url(marker) and (os.path.islink(staging) or os.path.islink(marker)):
            continue  # not a directory this builder made
        if files.is_url(marker):
            files.delete([staging])
            continue
        try:
            with atomic.ExclusiveLock(marker, _Owned):
                files.delete([staging])
        except _Owned:
            continue  # a live build's


def manifest_files(manifest: dict) -> set[str]:
    """Every file a manifest's dataset consists of (plain names only: a manifest cannot point us
    at anything outside the directory)."""
    names = set()
    for split, info in (manifest.get("splits") or {}).items():
        names.update(info.get("pair_shards", ()))
        names.update(info.get("product_files", ()))
        if split != "train":
            names.add(tfrecords.questions_file_name(split))
    return {n for n in names if isinstance(n, str) and n and "/" not in n and "\\" not in n and n not in (".", "..")}


def _read_json(path: str):
    try:
        return json.loads(files.read_bytes(path))
    except (OSError, ValueError):
        return None  # absent or damaged: it vouches for no file


def owned_files(out_dir: str) -> set[str]:
    """Files earlier builds wrote here: the current manifest's, plus an interrupted swap's journal."""
    owned = manifest_files(_read_json(files.join(out_dir, tfrecords.MANIFEST_NAME)) or {})
    journal = _read_json(files.join(out_dir, JOURNAL))
    if isinstance(journal, list):
        owned |= manifest_files({"splits": {"train": {"pair_shards": journal}}})
    return owned


def swap_in(out_dir: str, staging: str, manifest: dict) -> None:
    new, old = manifest_files(manifest), owned_files(out_dir)
    journal = files.join(out_dir, JOURNAL)
    files.write_bytes(journal, json.dumps(sorted(old | new)).encode("utf-8"))
    files.delete([files.join(out_dir, tfrecords.MANIFEST_NAME)])  # untrusted from here until the end
    for name in sorted(new):
        files.rename(files.join(staging, name), files.join(out_dir, name))
    files.delete([files.join(out_dir, name) for name in sorted(old - new)])
    files.rename(files.join(staging, tfrecords.MANIFEST_NAME), files.join(out_dir, tfrecords.MANIFEST_NAME))
    if not files.is_url(out_dir):
        atomic.fsync_path(out_dir)  # the renames above are durable before the journal goes (atomic.py)
    files.delete([journal])
