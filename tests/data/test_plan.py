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
