"""What to download for each real dataset: a sorted list of (image id, URL) jobs.

STL (fashion2, home): every scene and product signature of the pairs file; the image of signature
`s` lives at `{prefix}/{s[0:2]}/{s[2:4]}/{s[4:6]}/{s}.jpg` and is saved as `<s>.jpg`.

Exact Street2Shop (fashion1): `photos/photos.txt` holds `<id>,<url>` lines whose ids are zero-padded
to 9 digits ("000000001"), while the meta JSON files use plain integers (1). We save `<int id>.jpg`,
the name the Street2Shop reader looks for first. When `meta/json` exists only the photos it refers
to (street photos of the pairs, shop photos of the retrieval files) are listed, unless `all_photos`.
"""

from __future__ import annotations

import glob
import os
import re

from ctl_keras.data.stl import load_json

STL_DATASETS = ("fashion2", "home")
DEFAULT_STL_PREFIX = "http://i.pinimg.com/400x"
# Ids become file names: only plain tokens, so a hostile list cannot write outside the output dir.
_SIGNATURE_RE = re.compile(r"^[0-9A-Za-z]{6,64}$")


def stl_url(signature: str, prefix: str = DEFAULT_STL_PREFIX) -> str:
    s = signature
    return f"{prefix.rstrip('/')}/{s[0:2]}/{s[2:4]}/{s[4:6]}/{s}.jpg"


def stl_jobs(pairs_path: str, prefix: str = DEFAULT_STL_PREFIX) -> tuple[list[tuple[str, str]], int]:
    """Jobs for every scene and product of an STL pairs file, and the number of unusable rows."""
    # Same reader as the builder: the upstream release is one JSON object per line, not a list.
    rows = load_json(pairs_path, "pairs")
    if not isinstance(rows, list):
        raise ValueError(f"pairs file {pairs_path} must hold a JSON list of {{product, scene, bbox}}")
    signatures, bad = set(), 0
    for row in rows:
        ids = [row.get(k) for k in ("scene", "product")] if isinstance(row, dict) else [None]
        good = [s for s in ids if isinstance(s, str) and _SIGNATURE_RE.match(s)]
        bad += len(good) != len(ids)
        signatures.update(good)
    return [(s, stl_url(s, prefix)) for s in sorted(signatures)], bad


def _referenced_photos(street2shop_dir: str) -> set[int] | None:
    meta = os.path.join(street2shop_dir, "meta", "json")
    files = sorted(glob.glob(os.path.join(meta, "*_pairs_*.json")) +
                   glob.glob(os.path.join(meta, "retrieval_*.json")))
    if not files:
        return None
    photos = set()
    for path in files:
        for row in load_json(path, "Street2Shop metadata"):
            try:
                photos.add(int(row["photo"]))
            except (KeyError, TypeError, ValueError):
                continue  # the reader counts bad rows; here a bad row just means nothing to fetch
    return photos


def _rewrite(url: str, rewrite: tuple[str, str] | None) -> str:
    return url.replace(rewrite[0], rewrite[1], 1) if rewrite and url.startswith(rewrite[0]) else url


def street2shop_jobs(street2shop_dir: str, rewrite: tuple[str, str] | None = None,
                     all_photos: bool = False) -> tuple[list[tuple[str, str]], int]:
    """Jobs from photos/photos.txt (optionally only referenced photos), and the bad-line count.

    `rewrite=(old, new)` replaces a leading `old` of each URL with `new`, for mirrors.
    """
    path = os.path.join(street2shop_dir, "photos", "photos.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Street2Shop photo list not found: {path}")
    wanted = None if all_photos else _referenced_photos(street2shop_dir)
    jobs, bad = {}, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            photo_id, _, url = line.strip().partition(",")
            if not photo_id.strip().isdigit() or not url.strip().lower().startswith(("http://", "https://")):
                bad += 1
                continue
            pid = int(photo_id)
            if wanted is None or pid in wanted:
                jobs[str(pid)] = _rewrite(url.strip(), rewrite)
    return sorted(jobs.items(), key=lambda kv: int(kv[0])), bad
