"""The table reader on hostile tables: cells of the wrong JSON/Parquet type, image paths that leave
--images_dir, huge CSV fields, headers with spaces or another case, ids pandas turned into floats."""

import csv
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ctl_keras.data import table_cells
from ctl_keras.data.table import read_table
from tests.data.test_table import _spec

ROW = {"scene": "s1", "product": "p1", "category": "Shop|Feet|Boots", "left": 20, "top": 50, "width": 100,
       "height": 40}


def _images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (200, 100)).save(images / "s1.jpg")
    Image.new("RGB", (10, 10)).save(images / "p1.jpg")
    return images


def _jsonl(tmp_path, rows, name="pairs"):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _csv(tmp_path, header, lines, name="pairs"):
    path = tmp_path / f"{name}.csv"
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, line)) + "\n" for line in lines))
    return str(path)


# ---------------------------------------------------------------- cell types
def test_json_booleans_strings_and_nulls_in_box_cells_are_bad_boxes(tmp_path):
    """`"width": true` used to be a 1-pixel box (float(True) == 1.0) and the row was kept."""
    images = _images(tmp_path)
    rows = [ROW, {**ROW, "product": "p2", "width": True}, {**ROW, "product": "p3", "height": False},
            {**ROW, "product": "p4", "left": "20"}, {**ROW, "product": "p5", "top": None},
            {**ROW, "product": "p6", "width": [100]}]
    pairs, skipped, _ = read_table(_spec("jsonl"), _jsonl(tmp_path, rows), str(images))
    assert [p.product_id for p in pairs] == ["p1"] and dict(skipped) == {"bad_box": 5}


@pytest.mark.parametrize("kind, value", [("bool", True), ("string", "100")])
def test_parquet_box_column_of_another_type_is_one_line(tmp_path, kind, value):
    """A Parquet column has one type: booleans (a 1-pixel box each) or strings are refused up front."""
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{**ROW, "width": value}, {**ROW, "product": "p2", "width": value}]), path)
    with pytest.raises(ValueError, match=rf"pairs\.parquet: box column 'width' holds {kind} values, not numbers"):
        read_table(_spec("parquet"), str(path), str(_images(tmp_path)))


def test_parquet_float_ids_read_as_integers(tmp_path):
    """pandas stores an id column with a gap as float64: 1001.0 is the id '1001' (images/1001.jpg), a
    missing id (NaN) is a bad row, not the id 'nan'."""
    images = _images(tmp_path)
    Image.new("RGB", (200, 100)).save(images / "1001.jpg")
    Image.new("RGB", (10, 10)).save(images / "2002.jpg")
    rows = [{**ROW, "scene": 1001.0, "product": 2002.0}, {**ROW, "scene": float("nan"), "product": 2002.0}]
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    pairs, skipped, path_of = read_table(_spec("parquet"), str(path), str(images))
    assert [(p.scene_id, p.product_id) for p in pairs] == [("1001", "2002")] and dict(skipped) == {"bad_row": 1}
    assert path_of("1001", "scene") == str(images / "1001.jpg")


# ---------------------------------------------------------------- image paths stay in --images_dir
@pytest.mark.parametrize("bbox", ["pixel_ltwh", "normalized_ltrb"])
def test_image_paths_outside_images_dir_are_counted_never_looked_up(tmp_path, bbox):
    """`..`, absolute paths and a symlink out of --images_dir are all `outside_images_dir`, whether
    the file they name exists or not (a count must not reveal which paths exist on the build host)."""
    images = _images(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (200, 100)).save(outside / "secret.jpg")
    os.symlink(outside / "secret.jpg", images / "link.jpg")
    os.symlink(outside / "secret.jpg", images / "s9.jpg")  # found as <id>.jpg, still outside
    os.symlink(images / "s1.jpg", images / "alias.jpg")  # a symlink that stays inside is fine
    (images / "sub").mkdir()
    box = {"left": 20, "top": 50, "width": 100, "height": 40} if bbox == "pixel_ltwh" else \
        {"left": 0.1, "top": 0.5, "right": 0.6, "bottom": 0.9}
    base = {**{k: ROW[k] for k in ("scene", "product", "category")}, **box}
    hostile = ["../outside/secret.jpg", "../outside/nothere.jpg", str(outside / "secret.jpg"),
               str(outside / "nothere.jpg"), "sub/../../outside/secret.jpg", "link.jpg", "sub/../s1.jpg"]
    rows = [{**base, "scene": f"s{i}", "scene_image": path} for i, path in enumerate(hostile, 10)]
    rows += [{**base, "product": "p7", "product_image": "../outside/secret.jpg"},
             {**base, "scene": "s9"}, {**base, "scene": "s2", "scene_image": "alias.jpg"},
             {**base, "scene": "s3", "scene_image": "a\0.jpg"}]  # names no file: a bad row
    pairs, skipped, path_of = read_table(_spec("jsonl", bbox), _jsonl(tmp_path, rows), str(images))
    assert [p.scene_id for p in pairs] == ["s2"] and path_of("s2", "scene") == str(images / "alias.jpg")
    assert dict(skipped) == {"outside_images_dir": len(rows) - 2, "bad_row": 1}


def test_images_dir_given_relative_and_through_a_symlink(tmp_path, monkeypatch):
    """Run from the data's directory with relative paths; --images_dir may itself be a symlink."""
    _images(tmp_path)
    os.symlink(tmp_path / "images", tmp_path / "pictures")
    monkeypatch.chdir(tmp_path)
    rows = [ROW, {**ROW, "product": "p2", "product_image": "p1.jpg"}]
    for images_dir in ("images", "pictures", "./images/"):
        pairs, skipped, _ = read_table(_spec("jsonl"), _jsonl(tmp_path, rows), images_dir)
        assert len(pairs) == 2 and not skipped, images_dir


# ---------------------------------------------------------------- CSV fields and headers
def test_a_10mb_csv_field_is_read(tmp_path):
    """A 10 MB description used to stop the whole file (csv's 128 KiB field limit); a 10 MB id is a bad row."""
    images = _images(tmp_path)
    header = ["scene", "product", "category", "left", "top", "width", "height", "description"]
    big = "x" * 10_000_000
    path = _csv(tmp_path, header, [["s1", "p1", "Shop|Feet", 20, 50, 100, 40, big],
                                   [big, "p2", "Shop|Feet", 20, 50, 100, 40, "short"]])
    pairs, skipped, _ = read_table(_spec(), path, str(images))
    assert [p.product_id for p in pairs] == ["p1"] and dict(skipped) == {"bad_row": 1}


def test_a_field_over_the_bound_is_one_line_naming_the_line(tmp_path, monkeypatch):
    """Over table_cells.FIELD_LIMIT (64 MiB; lowered here to keep the file small) the file is refused
    with the line, and csv's process-wide limit is put back afterwards."""
    monkeypatch.setattr(table_cells, "FIELD_LIMIT", 1000)
    before = csv.field_size_limit()
    path = _csv(tmp_path, ["scene", "product", "category", "left", "top", "width", "height"],
                [["s1", "p1", "Shop|Feet", 20, 50, 100, 40], ["s1", "p2", "x" * 2000, 20, 50, 100, 40]])
    with pytest.raises(ValueError, match=r"pairs\.csv is not readable csv: line 3: field larger than field limit"):
        read_table(_spec(), path, str(_images(tmp_path)))
    assert csv.field_size_limit() == before


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_header_with_spaces_or_another_case_is_matched(tmp_path, fmt):
    images = _images(tmp_path)
    header = [" Scene ", "PRODUCT", "category ", "Left", "top", "width", "height"]
    values = ["s1", "p1", "Shop|Feet", 20, 50, 100, 40]
    path = _csv(tmp_path, header, [values]) if fmt == "csv" else _jsonl(tmp_path, [dict(zip(header, values))])
    pairs, skipped, _ = read_table(_spec(fmt), path, str(images))
    assert [(p.scene_id, p.product_id) for p in pairs] == [("s1", "p1")] and not skipped


def test_ambiguous_or_misspelt_header_is_one_line_with_a_hint(tmp_path):
    images = _images(tmp_path)
    rest = ["product", "category", "left", "top", "width", "height"]
    with pytest.raises(ValueError, match=r"has no column 'scene' \(bbox pixel_ltwh needs .*\); did you mean 'scenes'\?$"):
        read_table(_spec(), _csv(tmp_path, ["scenes", *rest], []), str(images))
    with pytest.raises(ValueError, match=r"column 'scene' is ambiguous: 'Scene', 'SCENE'"):
        read_table(_spec(), _csv(tmp_path, ["Scene", "SCENE", *rest], [], "two"), str(images))
