"""Integer model versions and atomic publication of version directories.

TF Serving loads `<base>/<model>/<integer>/` and ignores other names. A version is built under a
hidden, non-integer name beside its final place and renamed only when every model of the export is
complete, so a server never sees a half-written version.

A version is an integer directory holding a SavedModel (`saved_model.pb`): an integer directory without
one (files a user or a tool put under `<model>/99/`) is not a version, never the latest, and only takes
its number out of use. Staging dirs are `.tmp-<version>-<pid>`; one whose process is gone (SIGKILL)
is removed by the next export of that model, and no other name is ever touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from typing import Iterator, Sequence

from ctl_keras.utils import atomic
from ctl_keras.utils.process import pid_alive


SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_STAGING = re.compile(r"^\.tmp-\d+-(\d+)$")


def _numbered(model_base: str) -> list[int]:
    """Every integer directory under `model_base`, complete or not."""
    if not os.path.isdir(model_base):
        return []
    return sorted(int(n) for n in os.listdir(model_base)
                  if n.isdigit() and os.path.isdir(os.path.join(model_base, n)))


def is_complete(version_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(version_dir, name)) for name in SAVED_MODEL_FILES)


def existing_versions(model_base: str) -> list[int]:
    """Version directories (integer name, a SavedModel inside) under `<export_dir>/<model>`, ascending."""
    return [v for v in _numbered(model_base) if is_complete(os.path.join(model_base, str(v)))]


def latest_version(model_base: str) -> int:
    versions = existing_versions(model_base)
    if not versions:
        raise FileNotFoundError(
            f"no exported version under {model_base}; run `ctl export` first")
    return versions[-1]


def next_version(export_dir: str, models: Sequence[str]) -> int:
    """One more than the largest version of any of `models`, so towers of one export share a number."""
    found = [v for m in models for v in existing_versions(os.path.join(export_dir, m))]
    version = max(found, default=0) + 1
    taken = {v for m in models for v in _numbered(os.path.join(export_dir, m))}
    while version in taken:  # an incomplete dir keeps its number: never renamed over, never merged into
        version += 1
    return version


def remove_dead_staging(model_base: str) -> list[str]:
    """Remove `.tmp-<version>-<pid>` dirs under `model_base` whose process no longer runs; their paths."""
    removed = []
    if not os.path.isdir(model_base):
        return removed
    for name in os.listdir(model_base):
        match = _STAGING.match(name)
        path = os.path.join(model_base, name)
        if match and os.path.isdir(path) and not os.path.islink(path) and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def staged_versions(export_dir: str, models: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (version, {model: staging dir}); on clean exit rename each staging dir to its version.

    On an exception the staging dirs are removed and nothing is published.
    """
    version = next_version(export_dir, models)
    staging = {}
    for model in models:
        base = os.path.join(export_dir, model)
        os.makedirs(base, exist_ok=True)
        remove_dead_staging(base)
        staging[model] = os.path.join(base, f".tmp-{version}-{os.getpid()}")
        shutil.rmtree(staging[model], ignore_errors=True)
    try:
        yield version, staging
        for model in staging:
            final = os.path.join(export_dir, model, str(version))
            if os.path.exists(final):
                raise FileExistsError(f"{final} appeared during the export (another exporter running?)")
        for path in staging.values():
            atomic.fsync_tree(path)  # durable before it becomes visible (atomic.py)
        for model, path in staging.items():
            os.rename(path, os.path.join(export_dir, model, str(version)))
            atomic.fsync_path(os.path.join(export_dir, model))
    finally:
        for path in staging.values():
            shutil.rmtree(path, ignore_errors=True)
