"""STL reader and category mapping on small hand-made files."""

import collections
import json

import pytest

from ctl_keras import spec as spec_lib
from ctl_keras.data.plan import assign_categories
from ctl_keras.data.stl import RawPair, read_stl

SHOES = "Apparel & Accessories|Shoes"
TOPS = "Apparel & Accessories|Clothing|Shirts & Tops"


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_reads_rows_and_counts_each_bad_row_reason(tmp_path):
    rows = [
        {"product": "p1", "scene": "s1", "bbox": [0.1, 0.2, 0.3, 0.4]},   # kept
        {"product": "p2", "scene": "s1", "bbox": [0, 0, 1, 1]},           # kept (whole image is valid)
        {"product": "p1", "scene": "s2"},                                 # bad_row: no bbox
        "not an object",                                                  # bad_row
        {"product": "p1", "scene": "s2", "bbox": [0.5, 0.1, 0.4, 0.2]},   # bad_box: left >= right
        {"product": "p1", "scene": "s2", "bbox": [0.1, 0.1, 1.2, 0.2]},   # bad_box: outside [0, 1]
        {"product": "p1", "scene": "s2", "bbox": [0.1, 0.1, 0.2]},        # bad_box: 3 numbers
        {"product": "p9", "scene": "s2", "bbox": [0.1, 0.1, 0.2, 0.2]},   # no_category
        {"product": "p1", "scene": "../s2", "bbox": [0.1, 0.1, 0.2, 0.2]},  # bad_row: id is a path
    ]
    pairs_path = write(tmp_path / "pairs.json", rows)
    cats_path = write(tmp_path / "cat.json", {"p1": SHOES, "p2": TOPS})
    pairs, skipped = read_stl(pairs_path, cats_path)
    assert pairs == [RawPair("s1", "p1", SHOES, (0.1, 0.2, 0.3, 0.4)),
                     RawPair("s1", "p2", TOPS, (0.0, 0.0, 1.0, 1.0))]
    assert skipped == collections.Counter(bad_row=3, bad_box=3, no_category=1)
    assert len(pairs) + sum(skipped.values()) == len(rows)


def test_boxes_slightly_outside_the_image_are_clipped_and_flagged(tmp_path):
    """The readers' one rule (crop.clip_box, as Street2Shop): up to 2% outside [0, 1] is clipped and the
    row flagged `clipped`; 1.2 (above) and -0.03 stay bad boxes. Rounding in the release gives 1.004."""
    rows = [{"product": "p1", "scene": "s1", "bbox": [-0.01, 0.2, 1.004, 0.4]},  # clipped
            {"product": "p1", "scene": "s2", "bbox": [0.1, 0.2, 0.3, 0.4]},       # inside: not flagged
            {"product": "p1", "scene": "s3", "bbox": [-0.03, 0.2, 0.3, 0.4]}]     # bad_box
    pairs, skipped = read_stl(write(tmp_path / "pairs.json", rows), write(tmp_path / "cat.json", {"p1": SHOES}))
    assert pairs == [RawPair("s1", "p1", SHOES, (0.0, 0.2, 1.0, 0.4), True),
                     RawPair("s2", "p1", SHOES, (0.1, 0.2, 0.3, 0.4), False)]
    assert skipped == collections.Counter(bad_box=1)


def test_accepts_json_lines(tmp_path):
    """The upstream release writes one object per line."""
    lines = "\n".join(json.dumps({"product": p, "scene": "s", "bbox": [0.1, 0.1, 0.2, 0.2]}) for p in ("a", "b"))
    (tmp_path / "pairs.json").write_text(lines + "\n")
    pairs, skipped = read_stl(tmp_path / "pairs.json", write(tmp_path / "cat.json", {"a": SHOES, "b": SHOES}))
    assert [p.product_id for p in pairs] == ["a", "b"] and not skipped


def test_whole_file_errors_name_the_file(tmp_path):
    cats = write(tmp_path / "cat.json", {})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_stl(tmp_path / "nope.json", cats)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        read_stl(tmp_path / "broken.json", cats)
    with pytest.raises(ValueError, match="list"):
        read_stl(write(tmp_path / "obj.json", {"a": 1}), cats)
    with pytest.raises(ValueError, match="object"):
        read_stl(write(tmp_path / "p.json", []), write(tmp_path / "c.json", ["x"]))


def test_assign_categories_maps_paths_and_counts_unknown():
    pairs = [RawPair("s", "a", SHOES, (0, 0, 1, 1)), RawPair("s", "b", TOPS, (0, 0, 1, 1)),
             RawPair("s", "c", "Apparel & Accessories|Clothing|Dresses", (0, 0, 1, 1))]
    kept, skipped = assign_categories(pairs, spec_lib.resolve("fashion2").matcher())
    assert [(p.product_id, c) for p, c in kept] == [("a", "shoes"), ("b", "tops")]
    assert skipped == collections.Counter(unknown_category=1)


def test_fashion1_dresses_are_dropped_not_unknown():
    pairs = [RawPair("1", "2", "dresses", (0, 0, 1, 1)), RawPair("1", "3", "bags", (0, 0, 1, 1)),
             RawPair("1", "4", "socks", (0, 0, 1, 1))]
    kept, skipped = assign_categories(pairs, spec_lib.resolve("fashion1").matcher())
    assert [c for _, c in kept] == ["bags"]
    assert skipped == collections.Counter(dropped_category=1, unknown_category=1)


def test_non_utf8_files_are_an_error_naming_the_file(tmp_path):
    """Latin-1 bytes used to raise a bare UnicodeDecodeError naming neither the file nor the fix."""
    cats = write(tmp_path / "cat.json", {"p1": SHOES})
    text = '[{"product": "p1", "scene": "s1", "bbox": [0, 0, 1, 1], "note": "café"}]'
    latin1 = tmp_path / "pairs-latin1.json"
    latin1.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"pairs file is not UTF-8 text: .*pairs-latin1\.json "
                                         rf"\(byte {text.index('é')}: b'\\xe9'\)"):
        read_stl(latin1, cats)
    bad_cats = tmp_path / "cat-bad.json"
    bad_cats.write_bytes(b'{"p1": "\xff"}')
    with pytest.raises(ValueError, match=r"categories file is not UTF-8 text: .*cat-bad\.json"):
        read_stl(write(tmp_path / "ok.json", []), bad_cats)
    # A UTF-8 byte-order mark (Windows editors write one) is accepted.
    bom = tmp_path / "pairs-bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"product": "p1", "scene": "s1", "bbox": [0, 0, 1, 1]}]).encode())
    assert read_stl(bom, cats)[0] == [RawPair("s1", "p1", SHOES, (0.0, 0.0, 1.0, 1.0))]


def test_product_listed_twice_with_two_labels_is_skipped_and_counted(tmp_path):
    """json keeps the last of two keys silently; the reader counts the product's rows instead."""
    pairs = write(tmp_path / "pairs.json", [{"product": "p1", "scene": "s1", "bbox": [0, 0, 1, 1]},
                                            {"product": "p2", "scene": "s1", "bbox": [0, 0, 1, 1]},
                                            {"product": "p3", "scene": "s1", "bbox": [0, 0, 1, 1]}])
    cats = tmp_path / "cat.json"
    cats.write_text('{"p1": "%s", "p2": "%s", "p1": "%s", "p3": "%s", "p3": "%s"}' % (SHOES, TOPS, TOPS, SHOES, SHOES))
    kept, skipped = read_stl(pairs, cats)
    assert [p.product_id for p in kept] == ["p2", "p3"]  # p3 is listed twice with the same label: fine
    assert skipped == collections.Counter(conflicting_category=1)
