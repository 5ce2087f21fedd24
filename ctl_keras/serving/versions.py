"""Integer model versions and atomic publication of version directories.

TF Serving loads `<base>/<model>/<integer>/` and ignores other names. A version is built under a
hidden, non-integer name beside its final place and renamed only when every model of the export is
complete, so a server never sees a half-written version.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator, Sequence


def existing_versions(model_base: str) -> list[int]:
    """Integer version directories under `<export_dir>/<model>`, ascending."""
    if not os.path.isdir(model_base):
        return []
    return sorted(int(n) for n in os.listdir(model_base)
                  if n.isdigit() and os.path.isdir(os.path.join(model_base, n)))


def latest_version(model_base: str) -> int:
    versions = existing_versions(model_base)
    if not versions:
        raise FileNotFoundError(
            f"no exported version under {model_base}; run `python -m ctl_keras.export` first")
    return versions[-1]


def next_version(export_dir: str, models: Sequence[str]) -> int:
    """One more than the largest version of any of `models`, so towers of one export share a number."""
    found = [v for m in models for v in existing_versions(os.path.join(export_dir, m))]
    return max(found, default=0) + 1


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
        staging[model] = os.path.join(base, f".tmp-{version}-{os.getpid()}")
        shutil.rmtree(staging[model], ignore_errors=True)
    try:
        yield version, staging
        for model in staging:
            final = os.path.join(export_dir, model, str(version))
            if os.path.exists(final):
                raise FileExistsError(f"{final} appeared during the export (another exporter running?)")
        for model, path in staging.items():
            os.rename(path, os.path.join(export_dir, model, str(version)))
    finally:
        for path in staging.values():
            shutil.rmtree(path, ignore_errors=True)
