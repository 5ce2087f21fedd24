"""Attention hit rates on hand-made boxes and maps (no model)."""

import math

import numpy as np
import pytest

from ctl_keras.analysis import attention_hits as ah


def test_view_boxes_resize_and_center_crop():
    """R=72, S=64 -> offset 4: v -> (72 v - 4) / 64; 0.5 -> 0.5, 0 -> clipped 0, 1 -> 1."""
    boxes = ah.view_boxes([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 1.0, 1.0]], image_size=64, resize_size=72)
    np.testing.assert_allclose(boxes, [[0, 0, 0.5, 0.5], [14 / 64, 0.5, 1, 1]])
    # A box inside the 4 px border the center crop cuts off disappears.
    assert ah.view_boxes([[0.0, 0.0, 0.05, 1.0]], 64, 72).shape == (0, 4)


def test_top_left_box_and_peaked_maps():
    """A box covering exactly the top-left 2x2 cells of a 4x4 grid makes those 4 cells relevant."""
    relevant = ah.relevant_cells([[0.0, 0.0, 0.5, 0.5]], 4)
    expected = np.zeros((4, 4), bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(relevant, expected)
    peak_in = np.zeros((4, 4))
    peak_in[0, 0] = 1.0
    peak_out = np.zeros((4, 4))
    peak_out[3, 3], peak_out[2, 3], peak_out[1, 1] = 3.0, 2.0, 1.0
    rates = ah.hit_rates(np.stack([peak_in, peak_out]), np.stack([relevant, relevant]))
    # scene 1: top-1 (0,0) hits; scene 2: top-1 (3,3) misses, its third cell (1,1) hits.
    assert rates == {"top1": 0.5, "top3": 1.0, "scenes": 2, "scenes_without_relevant": 0}


def test_more_than_half_rule_at_the_boundary():
    """Cell (0,1) spans x in [0.25, 0.5]; a box to x=0.375 covers exactly half of it -> not relevant."""
    half = ah.box_coverage([[0.0, 0.0, 0.375, 0.25]], 4)[0]
    assert half[0, 0] == 1.0 and half[0, 1] == 0.5
    assert not ah.relevant_cells([[0.0, 0.0, 0.375, 0.25]], 4)[0, 1]
    assert ah.relevant_cells([[0.0, 0.0, 0.38, 0.25]], 4)[0, 1]


def test_one_box_must_cover_half_not_the_union():
    """The paper's rule is per box ("overlaps ... with any product's bounding box"): two disjoint boxes
    covering 0.3 of cell (0,0) each (0.6 together) do not make it relevant; one covering 0.6 does."""
    two = [[0.0, 0.0, 0.075, 0.25], [0.15, 0.0, 0.225, 0.25]]  # 0.075 / 0.25 = 0.3 of the cell's width
    one = [[0.0, 0.0, 0.15, 0.25]]
    np.testing.assert_allclose(ah.box_coverage(two, 4)[:, 0, 0], [0.3, 0.3])
    assert not ah.relevant_cells(two, 4)[0, 0] and ah.relevant_cells(one, 4)[0, 0]
    assert not ah.relevant_cells(np.zeros((0, 4)), 4).any()


def test_scenes_without_relevant_cells_count_as_misses():
    """All test scenes count (paper: 'for all test scene images'); two of three have no relevant cell."""
    relevant = np.zeros((3, 4, 4), bool)
    relevant[0, 0, 0] = True
    maps = np.zeros((3, 4, 4))
    maps[:, 0, 0] = 1.0
    rates = ah.hit_rates(maps, relevant)
    assert rates["scenes"] == 3 and rates["scenes_without_relevant"] == 2
    assert rates["top1"] == pytest.approx(1 / 3) and rates["top3"] == pytest.approx(1 / 3)
    assert ah.random_expected(relevant)["top1"] == pytest.approx((1 / 16) / 3)


def test_spectral_residual_saliency_finds_a_bright_square_without_any_label():
    """The model-free detector, given only the image, peaks on the one object of a flat scene."""
    from ctl_keras.analysis import spectral_saliency

    image = np.full((1, 64, 64, 3), 128, np.uint8)
    image[0, 40:56, 8:24] = (250, 30, 30)  # object in cell (row 2, col 0) of a 4x4 grid... rows 40-56
    maps = spectral_saliency.grid_maps(image, 4)
    assert maps.shape == (1, 4, 4) and np.all(np.isfinite(maps))
    assert np.unravel_index(np.argmax(maps[0]), (4, 4)) in {(2, 0), (3, 0), (2, 1), (3, 1)}
    with pytest.raises(ValueError, match="RGB images"):
        spectral_saliency.pixel_maps(np.zeros((1, 8, 8)))


def test_random_expectation_and_seeded_sampling():
    """16 cells, 4 relevant: top-1 = 4/16 = 0.25; top-3 = 1 - C(12,3)/C(16,3) = 1 - 220/560."""
    relevant = np.zeros((2000, 4, 4), bool)
    relevant[:, :2, :2] = True
    expected = ah.random_expected(relevant)
    assert expected["top1"] == pytest.approx(0.25)
    assert expected["top3"] == pytest.approx(1 - math.comb(12, 3) / math.comb(16, 3))
    sampled = ah.hit_rates(ah.random_maps(2000, 4, seed=0), relevant)
    assert abs(sampled["top1"] - 0.25) < 0.03 and abs(sampled["top3"] - expected["top3"]) < 0.03
    np.testing.assert_array_equal(ah.random_maps(5, 4, 1), ah.random_maps(5, 4, 1))


def test_markdown_table_in_percent():
    table = ah.markdown_table({"attention": {"top1": 0.5, "top3": 1.0}})
    assert "| attention | 50.0% | 100.0% |" in table
