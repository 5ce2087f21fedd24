"""Reader for a retailer's own pairs table: CSV, JSON lines or Parquet, one row per scene-product pair.

Columns (renamed by the spec's `columns`, e.g. {"scene": "look_id"}):
  scene, product   ids (letters, digits, "_", "-", "."; they name records and index entries)
  category         the product's source label, mapped by the spec's `categories` / `drop`
  left, top        and right, bottom (bbox normalized_ltrb or pixel_ltrb) or width, height (pixel_ltwh)
  scene_image, product_image   optional: image paths relative to --images_dir; by default
                   <images_dir>/<id>.jpg, .jpeg or .png, the first that exists.
Pixel boxes are normalized by the scene image's size, read from its header (not decoded).
Every row either becomes a RawPair or is counted under a reason; a product listed with two category
labels is skipped with all its rows ("conflicting_category"), as is an id given two image files
("conflicting_image"): keeping either would be a silent guess.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
import re
from typing import Callable, Iterator


from ctl_keras import progress
from ctl_keras.data import image_rule
from ctl_keras.data.crop import clip_box
from ctl_keras.data.stl import RawPair

BOX_COLUMNS = {"normalized_ltrb": ("left", "top", "right", "bottom"),
               "pixel_ltrb": ("left", "top", "right", "bottom"),
               "pixel_ltwh": ("left", "top", "width", "height")}
ID_COLUMNS = ("scene", "product", "category")
IMAGE_COLUMNS = ("scene_image", "product_image")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_ID_RE = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z_.-]{0,127}$")
PROGRESS_EVERY = 1000  # rows per progress update


def _csv_rows(path: str) -> Iterator[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        yield from csv.DictReader(f)


def _jsonl_rows(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"pairs file {path} line {number} is not JSON: {e}") from None
            yield row if isinstance(row, dict) else {}


def _parquet_rows(path: str) -> Iterator[dict]:
    import pyarrow.parquet as pq  # noqa: PLC0415 (installed with Beam; only Parquet needs it)

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 (pyarrow raises its own ArrowInvalid for a non-Parquet file)
        raise ValueError(f"pairs file {path} is not a Parquet file: {' '.join(str(e).split())}") from None
    for batch in parquet.iter_batches(batch_size=65_536):  # bounded memory on large tables
        yield from batch.to_pylist()


ROW_READERS: dict[str, Callable[[str], Iterator[dict]]] = {
    "csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}


def _header(fmt: str, path: str) -> list[str] | None:
    """The column names where the format has a header (CSV, Parquet); None for JSON lines."""
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            return list(pq.read_schema(path).names)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"pairs file {path} is not a Parquet file: {' '.join(str(e).split())}") from None
    return None


class ImagePaths:
    """(role, id) -> image path, resolved while reading; picklable (the Beam plan step calls it)."""

    def __init__(self, images_dir: str):
        self.images_dir = images_dir
        self.paths: dict[tuple[str, str], str] = {}
        self._remote = "://" in images_dir

    def resolve(self, role: str, image_id: str, relative: str | None) -> str:
        if relative:
            return os.path.join(self.images_dir, relative)
        key = (role, image_id)
        if key not in self.paths:
            candidates = [os.path.join(self.images_dir, image_id + s) for s in IMAGE_SUFFIXES]
            found = candidates[0] if self._remote else next((c for c in candidates if os.path.isfile(c)), None)
            self.paths[key] = found or candidates[0]  # missing: the image check counts it
        return self.paths[key]

    def __call__(self, image_id: str, role: str) -> str:
        return self.paths[(role, image_id)]


def _unreadable(path: str, fmt: str, err: Exception) -> ValueError:
    return ValueError(f"pairs file {path} is not readable {fmt}: {err}")


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _numbers(row: dict, names) -> tuple[float, ...] | None:
    try:
        values = tuple(float(row[n]) for n in names)
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _normalized(values, bbox: str, size) -> tuple:
    if bbox == "normalized_ltrb":
        return values
    width, height = size
    left, top, c, d = values
    right, bottom = (left + c, top + d) if bbox == "pixel_ltwh" else (c, d)
    return left / width, top / height, right / width, bottom / height


def read_table(spec, pairs_path: str, images_dir: str):
    """-> (pairs, skipped-row counts by reason, path_of(id, role)); len(pairs) + sum(counts) = rows.

    Row reasons: "bad_row" (a missing id or category, or an id that is not a plain token),
    "bad_box" (non-numeric or outside the image beyond crop.clip_box's tolerance),
    "missing_image" / "corrupt_image" (pixel boxes: the scene image, read for its size),
    "conflicting_category", "conflicting_image" (see the module docstring).
    """
    pairs_path, images_dir = os.fspath(pairs_path), os.fspath(images_dir)
    if not os.path.isfile(pairs_path):
        raise FileNotFoundError(f"pairs file not found: {pairs_path}")
    rename = dict(spec.columns)
    col = {name: rename.get(name, name) for name in (*ID_COLUMNS, *BOX_COLUMNS[spec.bbox], *IMAGE_COLUMNS)}
    try:
        header = _header(spec.pairs_format, pairs_path)
    except (UnicodeDecodeError, csv.Error) as e:  # the first buffer is decoded with the header
        raise _unreadable(pairs_path, spec.pairs_format, e) from None
    if header is not None:
        missing = [col[n] for n in (*ID_COLUMNS, *BOX_COLUMNS[spec.bbox]) if col[n] not in header]
        if missing:
            raise ValueError(f"pairs file {pairs_path} has no column {missing[0]!r} (bbox {spec.bbox} needs "
                             f"{', '.join(col[n] for n in (*ID_COLUMNS, *BOX_COLUMNS[spec.bbox]))}; "
                             f"the spec's 'columns' renames them)")
    if spec.bbox != "normalized_ltrb" and "://" in images_dir:
        raise ValueError(f"bbox {spec.bbox} reads every scene's size from its header: give a local (or mounted) "
                         f"--images_dir, not {images_dir}")
    paths, sizes = ImagePaths(images_dir), {}
    rows, skipped = [], collections.Counter()
    labels, images = collections.defaultdict(set), collections.defaultdict(set)
    bar = progress.Progress(desc=f"read {os.path.basename(pairs_path)}", unit="row")
    try:
        for number, row in enumerate(ROW_READERS[spec.pairs_format](pairs_path), 1):
            reason, item = _read_row(row, col, spec.bbox, paths, sizes)
            if reason:
                skipped[reason] += 1
            else:
                rows.append(item)
                labels[item[0].product_id].add(item[0].label)
                images[("scene", item[0].scene_id)].add(item[1])
                images[("product", item[0].product_id)].add(item[2])
            if number % PROGRESS_EVERY == 0:
                bar.update(PROGRESS_EVERY)
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(pairs_path, spec.pairs_format, e) from None
    finally:
        bar.close()
    pairs = []
    for pair, scene_path, product_path in rows:
        if len(labels[pair.product_id]) > 1:
            skipped["conflicting_category"] += 1
        elif len(images[("scene", pair.scene_id)]) > 1 or len(images[("product", pair.product_id)]) > 1:
            skipped["conflicting_image"] += 1
        else:
            paths.paths[("scene", pair.scene_id)] = scene_path
            paths.paths[("product", pair.product_id)] = product_path
            pairs.append(pair)
    return pairs, skipped, paths


def _read_row(row, col, bbox, paths: ImagePaths, sizes):
    if not isinstance(row, dict):
        return "bad_row", None
    scene, product, label = (_text(row.get(col[n])) for n in ID_COLUMNS)
    if not (_ID_RE.match(scene) and _ID_RE.match(product) and label):
        return "bad_row", None
    values = _numbers(row, [col[n] for n in BOX_COLUMNS[bbox]])
    if values is None:
        return "bad_box", None
    scene_path = paths.resolve("scene", scene, _text(row.get(col["scene_image"])) or None)
    product_path = paths.resolve("product", product, _text(row.get(col["product_image"])) or None)
    size = None
    if bbox != "normalized_ltrb":
        size = image_rule.header_size(scene_path, sizes)
        if isinstance(size, str):
            return size, None
    box, clipped = clip_box(_normalized(values, bbox, size))
    if box is None:
        return "bad_box", None
    return None, (RawPair(scene, product, label, box, clipped), scene_path, product_path)

