"""Reader for the Pinterest Shop-the-Look format (fashion2, home, synthetic).

Pairs file: a JSON list of `{"product": sig, "scene": sig, "bbox": [left, top, right, bottom]}` with
normalized boxes. The upstream release ships one JSON object per line instead of a list; both are
accepted. Category file: a JSON object `{product signature: category path}`.
Images live in `images_dir/<signature>.jpg` (see `image_path`); the builder checks them.
"""

from __future__ import annotations

import collections
import json
import os
import re
from typing import Any, NamedTuple

from ctl_keras.data.crop import clip_box

_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,128}$")


class RawPair(NamedTuple):
    """One annotated (scene, product) row; `label` is the source category label, `box` normalized;
    `clipped`: the source box overran the image slightly and was clipped (crop.clip_box)."""

    scene_id: str
    product_id: str
    label: str
    box: tuple[float, float, float, float]
    clipped: bool = False


def image_path(images_dir: str | os.PathLike, image_id: str, role: str = "scene") -> str:
    """`images_dir/<id>.jpg`, for a scene and a product alike (STL ids are image signatures)."""
    return os.path.join(os.fspath(images_dir), f"{image_id}.jpg")


def _keep_duplicates(items: list[tuple[str, Any]]) -> dict:
    """object_pairs_hook: a key listed twice with different values maps to CONFLICT (json's default
    keeps the last silently)."""
    out: dict = {}
    for key, value in items:
        out[key] = CONFLICT if key in out and out[key] != value else value
    return out


CONFLICT = "\x00conflict"  # a categories-file product listed twice with different labels


def load_json(path: str | os.PathLike, what: str, *, duplicates: bool = False) -> Any:
    """Whole-file JSON, or JSON lines; a clear error naming the file otherwise.

    UTF-8 (a leading byte-order mark is accepted); other bytes are a ValueError naming the file and
    the offset, where Python's own UnicodeDecodeError names neither.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} file is not UTF-8 text: {path} (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                         f"JSON files must be UTF-8") from None
    hook = _keep_duplicates if duplicates else None
    try:
        return json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as whole_error:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            return [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            raise ValueError(f"{what} file is not valid JSON: {path} ({whole_error})") from None


def read_stl(pairs_path: str | os.PathLike,
             categories_path: str | os.PathLike) -> tuple[list[RawPair], collections.Counter]:
    """-> (pairs, skipped-row counts by reason); len(pairs) + sum(counts) = input rows.

    Row reasons: "bad_row" (not an object with product/scene/bbox, or an id that is not a plain
    token of letters, digits, "_" or "-"), "bad_box" (crop.clip_box: boxes up to 2% outside the image
    are clipped and flagged `clipped`, further out are bad), "no_category"
    (product missing from the category file), "conflicting_category" (the category file lists the
    product twice with different labels: skipped, since either label would be a guess).
    """
    rows = load_json(pairs_path, "pairs")
    if not isinstance(rows, list):
        raise ValueError(f"pairs file must hold a JSON list of objects: {pairs_path}")
    categories = load_json(categories_path, "categories", duplicates=True)
    if not isinstance(categories, dict):
        raise ValueError(f"categories file must hold a JSON object product -> category: {categories_path}")

    pairs, skipped = [], collections.Counter()
    for row in rows:
        if not (isinstance(row, dict) and {"product", "scene", "bbox"} <= row.keys()
                and isinstance(row["bbox"], (list, tuple))):
            skipped["bad_row"] += 1
            continue
        box, clipped = clip_box(row["bbox"])
        if box is None:
            skipped["bad_box"] += 1
            continue
        product, scene = str(row["product"]), str(row["scene"])
        if not (_ID_RE.match(product) and _ID_RE.match(scene)):
            skipped["bad_row"] += 1  # ids become file names: only plain tokens
            continue
        label = categories.get(product)
        if label == CONFLICT:
            skipped["conflicting_category"] += 1
            continue
        if not label:
            skipped["no_category"] += 1
            continue
        pairs.append(RawPair(scene, product, str(label), box, clipped))
    return pairs, skipped

