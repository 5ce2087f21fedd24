"""The CTL crop rules, each on a hand-worked box."""

import pytest

from ctl_keras.data.crop import check_box, clip_box, ctl_crop, ctl_crop_all, expand_box, map_box, to_pixels

FASHION = ("top", "bottom")
HOME = ("top", "bottom", "left", "right")


def close(a, b):
    return a is not None and len(a) == len(b) and all(x == pytest.approx(y) for x, y in zip(a, b))


def test_expand_is_five_percent_per_side_and_clipped():
    """(0.3,0.4,0.7,0.6) grows to (0.25,0.35,0.75,0.65); (0.02,0,1,0.97) clips to (0,0,1,1)."""
    assert close(expand_box((0.3, 0.4, 0.7, 0.6)), (0.25, 0.35, 0.75, 0.65))
    assert close(expand_box((0.02, 0.0, 1.0, 0.97)), (0.0, 0.0, 1.0, 1.0))


def test_keeps_largest_region_bottom():
    """Box top 0.1, bottom 0.3 -> expanded 0.05/0.35: top area 0.05 < bottom area 0.65."""
    crop, side = ctl_crop((0.2, 0.1, 0.8, 0.3), FASHION)
    assert side == "bottom" and close(crop, (0.0, 0.35, 1.0, 1.0))


def test_keeps_largest_region_top():
    """Box rows 0.7..0.9 -> expanded 0.65..0.95: top 0.65 > bottom 0.05."""
    crop, side = ctl_crop((0.4, 0.7, 0.6, 0.9), FASHION)
    assert side == "top" and close(crop, (0.0, 0.0, 1.0, 0.65))


def test_tie_top_bottom_goes_to_top():
    """Rows 0.4..0.6 -> expanded 0.35..0.65: top and bottom both 0.35; top comes first."""
    crop, side = ctl_crop((0.3, 0.4, 0.7, 0.6), FASHION)
    assert side == "top" and close(crop, (0.0, 0.0, 1.0, 0.35))


def test_tie_all_four_goes_to_top_whatever_the_sides_order():
    """Centered 0.1 box -> expanded (0.4,0.4,0.6,0.6): all four regions have area 0.4."""
    for sides in (HOME, ("right", "left", "bottom", "top")):
        crop, side = ctl_crop((0.45, 0.45, 0.55, 0.55), sides)
        assert side == "top" and close(crop, (0.0, 0.0, 1.0, 0.4))


def test_tie_left_right_goes_to_left():
    """Tall centered box -> expanded (0.4,0.05,0.6,0.95): top/bottom 0.05, left = right = 0.4."""
    crop, side = ctl_crop((0.45, 0.1, 0.55, 0.9), HOME)
    assert side == "left" and close(crop, (0.0, 0.0, 0.4, 1.0))


def test_home_uses_left_right_fashion_does_not():
    """Box (0.1,0.1,0.3,0.9) -> expanded (0.05,0.05,0.35,0.95): top/bottom 0.05 (too small),
    right 0.65 (home keeps it)."""
    assert ctl_crop((0.1, 0.1, 0.3, 0.9), FASHION) == (None, "crop_too_small")
    crop, side = ctl_crop((0.1, 0.1, 0.3, 0.9), HOME)
    assert side == "right" and close(crop, (0.35, 0.0, 1.0, 1.0))


def test_box_touching_borders():
    """Top half (0,0,1,0.5): expansion clips at the border, bottom keeps 1-0.55 = 0.45.
    Bottom half (0,0.5,1,1): top keeps 0.45. Full-height box on the left: right keeps 0.55."""
    crop, side = ctl_crop((0.0, 0.0, 1.0, 0.5), FASHION)
    assert side == "bottom" and close(crop, (0.0, 0.55, 1.0, 1.0))
    crop, side = ctl_crop((0.0, 0.5, 1.0, 1.0), FASHION)
    assert side == "top" and close(crop, (0.0, 0.0, 1.0, 0.45))
    crop, side = ctl_crop((0.0, 0.0, 0.4, 1.0), HOME)
    assert side == "right" and close(crop, (0.45, 0.0, 1.0, 1.0))
    assert ctl_crop((0.0, 0.0, 1.0, 1.0), HOME) == (None, "crop_too_small")


def test_min_area_boundary():
    """Top edge 0.25 -> region 0.2 = min_area: kept. Top edge 0.24 -> 0.19 (bottom clipped to 0):
    dropped. Bottom edge 0.75 -> bottom region 1-0.8 = 0.2: kept."""
    crop, side = ctl_crop((0.1, 0.25, 0.9, 0.95), FASHION)
    assert side == "top" and close(crop, (0.0, 0.0, 1.0, 0.2))
    assert ctl_crop((0.1, 0.24, 0.9, 0.96), FASHION) == (None, "crop_too_small")
    crop, side = ctl_crop((0.1, 0.15, 0.9, 0.75), FASHION)
    assert side == "bottom" and close(crop, (0.0, 0.8, 1.0, 1.0))


def test_expand_and_min_area_are_parameters():
    """expand=0 keeps the raw edge 0.4; min_area=0.5 rejects a 0.35 region."""
    crop, side = ctl_crop((0.3, 0.4, 0.7, 0.6), FASHION, expand=0.0)
    assert side == "top" and close(crop, (0.0, 0.0, 1.0, 0.4))
    assert ctl_crop((0.3, 0.4, 0.7, 0.6), FASHION, min_area=0.5) == (None, "crop_too_small")


@pytest.mark.parametrize("box", [(0.5, 0.1, 0.5, 0.2), (0.6, 0.1, 0.5, 0.2), (0.1, 0.3, 0.2, 0.3),
                                 (-0.1, 0.1, 0.2, 0.2), (0.1, 0.1, 1.2, 0.2), (0.1, 0.1, 0.2),
                                 ("a", 0.1, 0.2, 0.3)])
def test_bad_boxes(box):
    assert check_box(box) is not None
    assert ctl_crop(box, FASHION) == (None, "bad_box")


def test_unknown_side_is_an_error():
    with pytest.raises(ValueError, match="diagonal"):
        ctl_crop((0.3, 0.4, 0.7, 0.6), ("top", "diagonal"))


def test_map_box_into_crop_frame():
    """Bottom crop (0,0.5,1,1): (0.2,0.4,0.6,0.8) clips to rows 0.5..0.8 -> (0.2,0,0.6,0.6).
    Left crop (0,0,0.4,1): (0.2,0.2,0.6,0.4) clips to cols 0.2..0.4 -> (0.5,0.2,1,0.4)."""
    assert close(map_box((0.2, 0.4, 0.6, 0.8), (0.0, 0.5, 1.0, 1.0)), (0.2, 0.0, 0.6, 0.6))
    assert close(map_box((0.2, 0.2, 0.6, 0.4), (0.0, 0.0, 0.4, 1.0)), (0.5, 0.2, 1.0, 0.4))
    assert close(map_box((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 0.3)), (0.0, 0.0, 1.0, 1.0))


def test_map_box_disjoint_or_touching_is_none():
    assert map_box((0.1, 0.1, 0.2, 0.3), (0.0, 0.5, 1.0, 1.0)) is None
    assert map_box((0.1, 0.3, 0.2, 0.5), (0.0, 0.5, 1.0, 1.0)) is None  # shares only an edge


def test_to_pixels():
    """(0,0.35,1,1) of a 100x80 image -> rows 28..80; a zero-size box still gets one pixel."""
    assert to_pixels((0.0, 0.35, 1.0, 1.0), 100, 80) == (0, 28, 100, 80)
    assert to_pixels((1.0, 1.0, 1.0, 1.0), 100, 80) == (99, 79, 100, 80)


def test_crop_of_a_product_shown_twice_leaves_no_copy():
    """Two identical chairs, home sides: A = (0.1, 0.6, 0.3, 0.9), B = (0.6, 0.5, 0.8, 0.8).
    A alone -> right of 0.35: (0.35, 0, 1, 1), area 0.65, which still shows B. Both: expanded union
    (0.05, 0.45, 0.85, 0.95): top 0.45, bottom 0.05, left 0.05, right 0.15 -> top (0, 0, 1, 0.45),
    which holds neither copy."""
    sides = ("top", "bottom", "left", "right")
    a, b = (0.1, 0.6, 0.3, 0.9), (0.6, 0.5, 0.8, 0.8)
    single, _ = ctl_crop(a, sides)
    assert single == pytest.approx((0.35, 0.0, 1.0, 1.0)) and map_box(b, single) is not None
    both, side = ctl_crop_all([a, b], sides)
    assert side == "top" and both == pytest.approx((0.0, 0.0, 1.0, 0.45))
    assert map_box(a, both) is None and map_box(b, both) is None
    assert ctl_crop_all([a, (0.5, 0.1, 0.4, 0.2)], sides) == (None, "bad_box")
    # Copies at the top and the bottom of a fashion scene leave no strip of 1/5 of the image.
    assert ctl_crop_all([(0.2, 0.05, 0.5, 0.3), (0.2, 0.7, 0.5, 0.95)], ("top", "bottom")) == (None, "crop_too_small")


def test_clip_box_is_the_one_tolerance_rule():
    """Up to 0.02 outside [0, 1] is clipped (flagged), beyond is bad; NaN, 3 numbers and empty are bad."""
    assert clip_box((0.1, 0.2, 0.3, 0.4)) == ((0.1, 0.2, 0.3, 0.4), False)
    assert clip_box((-0.02, 0.2, 1.015, 0.4)) == ((0.0, 0.2, 1.0, 0.4), True)
    assert clip_box((-0.021, 0.2, 0.5, 0.4)) == (None, False)
    assert clip_box((0.1, 0.2, float("nan"), 0.4)) == (None, False)
    assert clip_box((0.1, 0.2, 0.3)) == (None, False)
    assert clip_box((1.0, 0.2, 1.01, 0.4)) == (None, False)  # empty once clipped
