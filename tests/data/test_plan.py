"""plan_pairs on hand-made rows: a product listed twice in one scene, boxes of dropped categories."""

import pytest

from ctl_keras import spec as spec_lib
from ctl_keras.config import get_config
from ctl_keras.data import crop
from ctl_keras.data.plan import plan_pairs
from ctl_keras.data.stl import RawPair


def _plan(rows, dataset="fashion1"):
    config = get_config(dataset, smoke=True)
    return plan_pairs(config, rows, {}, lambda image_id, role: f"/images/{image_id}.jpg",
                      lambda paths: [None] * len(paths), lambda message: None,
                      labeler=spec_lib.resolve(dataset).matcher())


def test_product_listed_twice_keeps_both_boxes_and_crops_both_away():
    """Scene s lists bag b twice: (0.1, 0.75, 0.3, 0.95) and (0.6, 0.7, 0.9, 0.9); a hat h at
    (0.4, 0.1, 0.6, 0.2) and a dress d at (0.2, 0.3, 0.5, 0.5) (dresses are dropped in fashion1).
    Bag: expanded union top 0.65 -> crop (0, 0, 1, 0.65): the first box alone would give (0, 0, 1, 0.7),
    where the second copy shows. Hat and dress stay as other boxes, mapped: hat -> (0.4, 0.1/0.65, 0.6,
    0.2/0.65), dress -> (0.2, 0.3/0.65, 0.5, 0.5/0.65) with its source label."""
    rows = [RawPair("s", "b", "bags", (0.1, 0.75, 0.3, 0.95)), RawPair("s", "h", "hats", (0.4, 0.1, 0.6, 0.2)),
            RawPair("s", "b", "bags", (0.6, 0.7, 0.9, 0.9)), RawPair("s", "d", "dresses", (0.2, 0.3, 0.5, 0.5)),
            RawPair("s", "b", "bags", (0.1, 0.75, 0.3, 0.95))]  # the same box again: one copy, not three
    plan = _plan(rows)
    bag = next(p for p in plan["pairs"] if p["product_id"] == "b")
    assert bag["boxes"] == [(0.1, 0.75, 0.3, 0.95), (0.6, 0.7, 0.9, 0.9)] and bag["box"] == bag["boxes"][0]
    assert bag["crop_box"] == pytest.approx((0.0, 0.0, 1.0, 0.65))
    assert all(crop.map_box(box, bag["crop_box"]) is None for box in bag["boxes"])
    others = dict(zip(bag["other_categories"], bag["other_boxes"]))
    assert others.keys() == {"hats", "dresses"}
    assert others["hats"] == pytest.approx((0.4, 0.1 / 0.65, 0.6, 0.2 / 0.65))
    assert others["dresses"] == pytest.approx((0.2, 0.3 / 0.65, 0.5, 0.5 / 0.65))
    hat = next(p for p in plan["pairs"] if p["product_id"] == "h")  # crop below 0.25: both bags show there
    assert hat["other_categories"].count("bags") == 2
    assert plan["duplicate_boxes"] == 1 and plan["pairs_with_duplicate_boxes"] == 1
    assert plan["dropped"]["duplicate_pair"] == 2 and plan["dropped"]["dropped_category"] == 1
    assert len(plan["pairs"]) + sum(plan["dropped"].values()) == len(rows)


def test_clipped_boxes_are_counted():
    rows = [RawPair("s", "b", "bags", (0.0, 0.7, 0.3, 1.0), True), RawPair("t", "b", "bags", (0.1, 0.7, 0.3, 0.9))]
    assert _plan(rows)["clipped_boxes"] == 1


def test_degenerate_scenes_products_and_crops_are_dropped_and_counted(tmp_path):
    """A 1x1 scene and a 400x20 strip (aspect 20 > 10) are degenerate images, so is a 10x10 product;
    a 300x40 scene is fine, but the crop above a box at 0.45-0.9 of its height is 300x~16 px
    (aspect ~19): degenerate_crop. A 120x160 scene with its 32x32 product survives."""
    from PIL import Image

    sizes = {"tiny": (1, 1), "strip": (400, 20), "wide": (300, 40), "ok": (120, 160), "small": (10, 10),
             "p": (32, 32), "q": (32, 32)}
    for name, size in sizes.items():
        Image.new("RGB", size, (120, 60, 30)).save(tmp_path / f"{name}.jpg")
    box = (0.3, 0.45, 0.7, 0.9)
    rows = [RawPair("tiny", "p", "bags", box), RawPair("strip", "p", "bags", box),
            RawPair("wide", "p", "bags", box), RawPair("ok", "small", "bags", box), RawPair("ok", "q", "bags", box)]
    plan = plan_pairs(get_config("fashion1", smoke=True), rows, {}, lambda i, role: str(tmp_path / f"{i}.jpg"),
                      lambda paths: [crop.inspect_image(p) for p in paths], lambda message: None,
                      labeler=spec_lib.resolve("fashion1").matcher())
    assert [(p["scene_id"], p["product_id"]) for p in plan["pairs"]] == [("ok", "q")]
    assert plan["dropped"]["degenerate_image"] == 3 and plan["dropped"]["degenerate_crop"] == 1
    assert plan["by_category"]["bags"]["dropped"] == {"degenerate_crop": 1, "degenerate_image": 3}
