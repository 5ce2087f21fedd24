"""Exact Street2Shop reader on a hand-made meta/json tree with tiny JPEGs."""

import collections
import json

import pytest
from PIL import Image

from ctl_keras.data.stl import RawPair
from ctl_keras.data.street2shop import image_path, read_street2shop


def jpeg(path, size):
    Image.new("RGB", size, (120, 60, 30)).save(path, format="JPEG")


def box(left, top, width, height):
    return {"left": left, "top": top, "width": width, "height": height}


@pytest.fixture
def dataset(tmp_path):
    root, images = tmp_path / "s2s", tmp_path / "images"
    (root / "meta" / "json").mkdir(parents=True)
    images.mkdir()
    jpeg(images / "1.jpg", (200, 100))           # scene 1: 200 x 100
    jpeg(images / "000000002.jpg", (100, 50))    # scene 2, zero-padded name as in photos.txt
    (images / "3.jpg").write_bytes(b"not a jpeg")  # scene 3: corrupt
    for product_photo in (30, 40, 60):
        jpeg(images / f"{product_photo}.jpg", (32, 32))
    meta = root / "meta" / "json"
    train_bags = [
        {"photo": 1, "product": 7, "bbox": box(20, 10, 100, 50)},    # kept: (0.1, 0.1, 0.6, 0.6)
        {"photo": 2, "product": 8, "bbox": box(10, 5, 91, 45)},      # kept: right edge 101 px clipped
        {"photo": 9, "product": 7, "bbox": box(1, 1, 5, 5)},         # missing_image (scene 9)
        {"photo": 3, "product": 7, "bbox": box(1, 1, 5, 5)},         # corrupt_image
        {"photo": 1, "product": 7, "bbox": box(20, 10, 0, 50)},      # bad_box: zero width
        {"photo": 1, "product": 7, "bbox": box(150, 10, 100, 50)},   # bad_box: 50 px past the edge
        {"photo": 1, "product": 5, "bbox": box(1, 1, 5, 5)},         # no_product_image
        {"photo": 1, "product": 6, "bbox": box(1, 1, 5, 5)},         # missing_image: no shop photo on disk
        {"photo": 1, "bbox": box(1, 1, 5, 5)},                       # bad_row
    ]
    (meta / "train_pairs_bags.json").write_text(json.dumps(train_bags))
    (meta / "test_pairs_bags.json").write_text(json.dumps([{"photo": 2, "product": 7, "bbox": box(0, 0, 50, 25)}]))
    (meta / "retrieval_bags.json").write_text(json.dumps([
        {"photo": 40, "product": 7}, {"photo": 30, "product": 7},   # lowest present photo: 30
        {"photo": 20, "product": 8}, {"photo": 60, "product": 8},   # 20 not downloaded -> 60
        {"photo": 99, "product": 6}]))
    (meta / "train_pairs_dresses.json").write_text(json.dumps([{"photo": 1, "product": 11,
                                                                 "bbox": box(0, 0, 20, 20)}]))
    (meta / "retrieval_dresses.json").write_text(json.dumps([{"photo": 40, "product": 11}]))
    return root, images


def test_reads_pairs_normalizes_by_image_size_and_counts_reasons(dataset):
    """Scene 1 is 200x100: left 20/200 = 0.1, right 120/200 = 0.6, top 10/100, bottom 60/100.
    Scene 2 is 100x50: (10, 5, 101, 50) px -> (0.1, 0.1, 1.01 clipped to 1, 1.0)."""
    pairs, skipped = read_street2shop(*dataset)
    by_key = {(p.scene_id, p.product_id, p.label): p.box for p in pairs}
    assert by_key.keys() == {("1", "30", "bags"), ("2", "60", "bags"), ("2", "30", "bags"), ("1", "40", "dresses")}
    assert by_key[("1", "30", "bags")] == pytest.approx((0.1, 0.1, 0.6, 0.6))
    assert by_key[("2", "60", "bags")] == pytest.approx((0.1, 0.1, 1.0, 1.0))
    assert by_key[("2", "30", "bags")] == pytest.approx((0.0, 0.0, 0.5, 0.5))
    assert skipped == collections.Counter(missing_image=2, corrupt_image=1, bad_box=2, no_product_image=1,
                                          bad_row=1)
    assert all(isinstance(p, RawPair) for p in pairs)
    # The overrun box of scene 2 is flagged, as an STL box would be (crop.clip_box, one rule for both).
    assert [(p.scene_id, p.product_id) for p in pairs if p.clipped] == [("2", "60")]


def test_image_path_prefers_plain_then_padded(dataset):
    _, images = dataset
    assert image_path(images, 1).endswith("/1.jpg")
    assert image_path(images, 2).endswith("/000000002.jpg")
    assert image_path(images, 77).endswith("/77.jpg")  # neither exists: the plain name


def test_missing_metadata_is_a_clear_error(tmp_path, dataset):
    root, images = dataset
    with pytest.raises(FileNotFoundError, match="meta"):
        read_street2shop(tmp_path / "elsewhere", images)
    (root / "meta" / "json" / "retrieval_bags.json").unlink()
    with pytest.raises(FileNotFoundError, match="retrieval_bags.json"):
        read_street2shop(root, images)


def test_no_pair_files_is_a_clear_error(tmp_path):
    (tmp_path / "meta" / "json").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="_pairs_"):
        read_street2shop(tmp_path, tmp_path)
