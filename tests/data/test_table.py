"""The table reader (CSV / JSONL / Parquet): boxes, image paths, and every skip reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ctl_keras import spec as spec_lib
from ctl_keras.data.table import read_table


def _spec(fmt="csv", bbox="pixel_ltwh", **extra):
    return spec_lib.from_dict({"name": "shop", "pairs_format": fmt, "bbox": bbox,
                               "categories": {"boots": ["Shop|Feet|*"]}, **extra})


def _images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (200, 100)).save(images / "s1.jpg")  # a 200x100 scene
    Image.new("RGB", (50, 80)).save(images / "s2.png")  # found by the .png fallback
    Image.new("RGB", (10, 10)).save(images / "p1.jpg")
    (images / "broken.jpg").write_bytes(b"not an image")
    return images


def _write(tmp_path, fmt, rows, name="pairs"):
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv":
        keys = list(rows[0])
        path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r.get(k, "")) for k in keys) + "\n" for r in rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


ROW = {"scene": "s1", "product": "p1", "category": "Shop|Feet|Boots", "left": 20, "top": 50, "width": 100,
       "height": 40}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_pixel_ltwh_box_is_normalized_by_the_scene_header(tmp_path, fmt):
    """(20, 50, 100x40) in a 200x100 scene -> (0.1, 0.5, 0.6, 0.9)."""
    images = _images(tmp_path)
    pairs, skipped, path_of = read_table(_spec(fmt), _write(tmp_path, fmt, [ROW]), str(images))
    assert [p.box for p in pairs] == [pytest.approx((0.1, 0.5, 0.6, 0.9))] and not skipped
    assert path_of("s1", "scene") == str(images / "s1.jpg")


def test_ltrb_png_fallback_and_explicit_image_columns(tmp_path):
    """s2 has only a .png; pixel_ltrb (5, 8, 25, 40) of 50x80 -> (0.1, 0.1, 0.5, 0.5); an explicit
    product_image column names a file in a subdirectory."""
    images = _images(tmp_path)
    (images / "shop").mkdir()
    Image.new("RGB", (10, 10)).save(images / "shop" / "boot.jpg")
    rows = [{"scene": "s2", "product": "p9", "category": "Shop|Feet", "left": 5, "top": 8, "right": 25,
             "bottom": 40, "product_image": "shop/boot.jpg"}]
    pairs, skipped, path_of = read_table(_spec(bbox="pixel_ltrb"), _write(tmp_path, "csv", rows), str(images))
    assert pairs[0].box == pytest.approx((0.1, 0.1, 0.5, 0.5)) and not skipped
    assert path_of("s2", "scene") == str(images / "s2.png")
    assert path_of("p9", "product") == str(images / "shop" / "boot.jpg")


def test_every_skip_reason_is_counted(tmp_path):
    images = _images(tmp_path)
    rows = [ROW,
            {**ROW, "scene": "", "product": "p2"},  # bad_row: no scene id
            {**ROW, "product": "p/3"},  # bad_row: an id that is not a plain token
            {**ROW, "product": "p4", "left": "abc"},  # bad_box: not a number
            {**ROW, "product": "p5", "left": 150, "width": 100},  # bad_box: beyond the right edge
            {**ROW, "scene": "missing", "product": "p6"},  # missing_image (its size is needed)
            {**ROW, "scene": "broken", "product": "p7"},  # corrupt_image
            {**ROW, "scene": "s2", "product": "p8", "left": 5, "width": 20, "top": 1, "height": 2},
            {**ROW, "product": "p8", "category": "Shop|Bags"}]  # p8 with two labels: both rows skipped
    pairs, skipped, _ = read_table(_spec(), _write(tmp_path, "csv", rows), str(images))
    assert [p.product_id for p in pairs] == ["p1"]
    assert dict(skipped) == {"bad_row": 2, "bad_box": 2, "missing_image": 1, "corrupt_image": 1,
                             "conflicting_category": 2}
    assert len(pairs) + sum(skipped.values()) == len(rows)


def test_missing_column_and_renamed_columns(tmp_path):
    images = _images(tmp_path)
    path = _write(tmp_path, "csv", [{k: v for k, v in ROW.items() if k != "height"}])
    with pytest.raises(ValueError, match=r"pairs.csv has no column 'height' \(bbox pixel_ltwh needs"):
        read_table(_spec(), path, str(images))
    renamed = _write(tmp_path, "csv", [{("look_id" if k == "scene" else k): v for k, v in ROW.items()}], "renamed")
    pairs, _, _ = read_table(_spec(columns={"scene": "look_id"}), renamed, str(images))
    assert pairs[0].scene_id == "s1"


def test_not_parquet_is_one_line(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_text("scene,product\n")
    with pytest.raises(ValueError, match="is not a Parquet file"):
        read_table(_spec("parquet"), str(path), str(_images(tmp_path)))


def test_pixel_boxes_are_read_in_the_exif_oriented_frame(tmp_path):
    """A phone JPEG stored 200x100 with Orientation=6 is displayed 100x200 (the builder applies the
    rotation, data/image_rule.py): (20, 50, 60x100) normalizes by 100x200 -> (0.2, 0.25, 0.8, 0.75)."""
    images = _images(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (200, 100)).save(images / "phone.jpg", exif=exif)
    row = {**ROW, "scene": "phone", "left": 20, "top": 50, "width": 60, "height": 100}
    pairs, skipped, _ = read_table(_spec(), _write(tmp_path, "csv", [row]), str(images))
    assert not skipped and pairs[0].box == pytest.approx((0.2, 0.25, 0.8, 0.75))


def test_non_utf8_csv_and_bad_jsonl_line_are_one_line_naming_the_file(tmp_path):
    images = _images(tmp_path)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("scene,product,category,left,top,width,height\ns1,p1,Shop|Feet|Café,1,1,2,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv is not readable csv"):
        read_table(_spec(), str(latin1), str(images))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROW) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2 is not JSON"):
        read_table(_spec("jsonl"), str(bad), str(images))
