"""Reader for a retailer's own pairs table: CSV, JSON lines or Parquet, one row per scene-product pair.

Columns (renamed by the spec's `columns`, e.g. {"scene": "look_id"}):
  scene, product   ids (letters, digits, "_", "-", "."; they name records and index entries)
  category         the product's source label, mapped by the spec's `categories` / `drop`
  left, top        and right, bottom (bbox normalized_ltrb or pixel_ltrb) or width, height (pixel_ltwh)
  scene_image, product_image   optional: image paths relative to --images_dir; by default
                   <images_dir>/<id>.jpg, .jpeg or .png, the first that exists. Either way the
                   path must stay inside --images_dir (data/table_paths.py).
Header names match with spaces stripped and case ignored; cells of the wrong type are counted, never
guessed at (data/table_cells.py).
Pixel boxes are normalized by the scene image's size, read from its header (not decoded).
Every row either becomes a RawPair or is counted under a reason; a product listed with two category
labels is skipped with all its rows ("conflicting_category"), as is an id given two image files
("conflicting_image"): keeping either would be a silent guess.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import os
import re
from typing import Callable, Iterator

from ctl_keras.utils import progress
from ctl_keras.data import image_rule, table_cells
from ctl_keras.data.crop import clip_box
from ctl_keras.data.stl import RawPair
from ctl_keras.data.table_paths import IMAGE_SUFFIXES, ImagePaths  # noqa: F401 (their home before)

BOX_COLUMNS = {"normalized_ltrb": ("left", "top", "right", "bottom"),
               "pixel_ltrb": ("left", "top", "right", "bottom"),
               "pixel_ltwh": ("left", "top", "width", "height")}
ID_COLUMNS = ("scene", "product", "category")
IMAGE_COLUMNS = ("scene_image", "product_image")
_ID_RE = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z_.-]{0,127}$")
PROGRESS_EVERY = 1000  # rows per progress update


@contextlib.contextmanager
def _field_limit():
    """csv's field size limit is process-wide: raised while a table is read, then put back."""
    previous = csv.field_size_limit(table_cells.FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_rows(path: str) -> Iterator[dict]:
    with _field_limit(), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            yield from reader
        except csv.Error as e:
            raise csv.Error(f"line {reader.reader.line_num}: {e}") from None  # DictReader lags a row


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
        with _field_limit(), open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            return list(pq.read_schema(path).names)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"pairs file {path} is not a Parquet file: {' '.join(str(e).split())}") from None
    return None


def _check_parquet_boxes(path: str, names: list[str]) -> None:
    """A Parquet column has one type: a box column of booleans or strings would make every row a bad
    box, so it is one line naming the column instead."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    schema = pq.read_schema(path)
    for name in names:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise ValueError(f"pairs file {path}: box column {name!r} holds {kind} values, not numbers")


def _unreadable(path: str, fmt: str, err: Exception) -> ValueError:
    return ValueError(f"pairs file {path} is not readable {fmt}: {err}")


def _numbers(row: dict, names, text: bool) -> tuple[float, ...] | None:
    values = tuple(table_cells.number(row.get(n), text) for n in names)
    return None if None in values else values


def _normalized(values, bbox: str, size) -> tuple:
    if bbox == "normalized_ltrb":
        return values
    width, height = size
    left, top, c, d = values
    right, bottom = (left + c, top + d) if bbox == "pixel_ltwh" else (c, d)
    return left / width, top / height, right / width, bottom / height


def read_table(spec, pairs_path: str, images_dir: str):
    """-> (pairs, skipped-row counts by reason, path_of(id, role)); len(pairs) + sum(counts) = rows.

    Row reasons: "bad_row" (a missing id or category, an id that is not a plain token, an image path
    cell that is not text), "bad_box" (not a number by table_cells.number, or outside the image beyond
    crop.clip_box's tolerance), "outside_images_dir" (data/table_paths.py), "missing_image" /
    "corrupt_image" (pixel boxes: the scene image, read for its size), "conflicting_category",
    "conflicting_image" (see the module docstring)."""
    pairs_path, images_dir = os.fspath(pairs_path), os.fspath(images_dir)
    if not os.path.isfile(pairs_path):
        raise FileNotFoundError(f"pairs file not found: {pairs_path}")
    rename = dict(spec.columns)
    col = {name: rename.get(name, name) for name in (*ID_COLUMNS, *BOX_COLUMNS[spec.bbox], *IMAGE_COLUMNS)}
    try:
        header = _header(spec.pairs_format, pairs_path)
    except (UnicodeDecodeError, csv.Error) as e:  # the first buffer is decoded with the header
        raise _unreadable(pairs_path, spec.pairs_format, e) from None
    needed = [col[n] for n in (*ID_COLUMNS, *BOX_COLUMNS[spec.bbox])]
    if header is not None:
        found = table_cells.match_columns(col.values(), header, pairs_path)
        missing = [name for name in needed if name not in found]
        if missing:
            raise ValueError(f"pairs file {pairs_path} has no column {missing[0]!r} (bbox {spec.bbox} needs "
                             f"{', '.join(needed)}; the spec's 'columns' renames them)"
                             + table_cells.hint(missing[0], header))
        col = {name: found.get(key, key) for name, key in col.items()}
        if spec.pairs_format == "parquet":
            _check_parquet_boxes(pairs_path, [col[n] for n in BOX_COLUMNS[spec.bbox]])
        columns_of = lambda row: col  # noqa: E731
    else:  # JSON lines: each row's keys
        columns_of = table_cells.RowColumns(col, pairs_path)
    if spec.bbox != "normalized_ltrb" and "://" in images_dir:
        raise ValueError(f"bbox {spec.bbox} reads every scene's size from its header: give a local (or mounted) "
                         f"--images_dir, not {images_dir}")
    paths, sizes = ImagePaths(images_dir), {}
    rows, skipped = [], collections.Counter()
    labels, images = collections.defaultdict(set), collections.defaultdict(set)
    bar = progress.Progress(desc=f"read {os.path.basename(pairs_path)}", unit="row")
    try:
        for number, row in enumerate(ROW_READERS[spec.pairs_format](pairs_path), 1):
            reason, item = _read_row(row, columns_of(row) if isinstance(row, dict) else col, spec.bbox,
                                     paths, sizes, text=spec.pairs_format == "csv")
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
    missing = sorted(path for path, size in sizes.items() if size == "missing_image")
    paths.missing_scenes = {"count": len(missing), "first": missing[0] if missing else None}
    return pairs, skipped, paths


def _read_row(row, col, bbox, paths: ImagePaths, sizes, text: bool):
    if not isinstance(row, dict):
        return "bad_row", None
    scene, product, label = (table_cells.id_text(row.get(col[n])) for n in ID_COLUMNS)
    relative = [table_cells.image_cell(row.get(col[n])) for n in IMAGE_COLUMNS]
    if not (_ID_RE.match(scene) and _ID_RE.match(product) and label) or None in relative:
        return "bad_row", None
    values = _numbers(row, [col[n] for n in BOX_COLUMNS[bbox]], text)
    if values is None:
        return "bad_box", None
    scene_path, reason = paths.resolve("scene", scene, relative[0])
    product_path, product_reason = paths.resolve("product", product, relative[1])
    if reason or product_reason:
        return reason or product_reason, None
    size = None
    if bbox != "normalized_ltrb":
        size = image_rule.header_size(scene_path, sizes)
        if isinstance(size, str):
            return size, None
    box, clipped = clip_box(_normalized(values, bbox, size))
    if box is None:
        return "bad_box", None
    return None, (RawPair(scene, product, label, box, clipped), scene_path, product_path)
