"""Staging directory -> the dataset directory, so an interrupted rebuild never costs the old dataset.

The pipeline writes everything into `<out>/.staging-<id>/` (same filesystem, so moves are renames).
Only once it is complete: record the files about to be owned (journal), drop the old manifest, move
the new files in, delete the old build's files that the new one does not have, write the manifest
last. Until then the previous dataset stays complete and readable. Files are deleted only when a
manifest (or the journal of an interrupted swap) lists them: a user's own files are never touched.
"""

from __future__ import annotations

import json
import uuid

from ctl_keras import atomic
from ctl_keras.builder import files
from ctl_keras.data import encoding as tfrecords

STAGING_PREFIX = ".staging-"
MARKER = "CTL_KERAS_STAGING"  # inside a staging directory: proves this builder made it
JOURNAL = ".build-owned.json"  # exists only while a swap is in progress


def new_staging(out_dir: str) -> str:
    staging = files.join(out_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    files.makedirs(staging)
    try:  # a signal while the marker is written (an fsync: milliseconds) must not leave the dir behind
        files.write_bytes(files.join(staging, MARKER), b"a ctl_keras build in progress; safe to delete\n")
    except BaseException:
        files.delete([staging])
        raise
    return staging


def remove_staging(staging: str) -> None:
    files.delete([staging])


def remove_abandoned_staging(out_dir: str) -> None:
    """Staging directories of killed runs (they carry our marker)."""
    for marker in files.matching(files.join(out_dir, f"{STAGING_PREFIX}*", MARKER)):
        files.delete([files.parent(marker)])


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
