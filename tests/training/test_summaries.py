"""Attention overlay colours, worked by hand."""

import numpy as np

from ctl_keras.training.summaries import overlay_attention


def test_overlay_colours_the_attended_cell_red_and_the_rest_blue():
    """Black 4x4 scene, 2x2 map with all weight top-right: jet(1) = (0.5,0,0), jet(0) = (0,0,0.5);
    blended at alpha 0.5 over black -> 0.25 * 255 = 63.75 -> 64 in red (top-right) or blue (elsewhere)."""
    images = np.zeros((1, 4, 4, 3), np.uint8)
    attention = np.array([[[0.0, 1.0], [0.0, 0.0]]], np.float32)
    out = overlay_attention(images, attention)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(out[0, :2, 2:], np.broadcast_to([64, 0, 0], (2, 2, 3)))
    np.testing.assert_array_equal(out[0, 2:, :], np.broadcast_to([0, 0, 64], (2, 4, 3)))
    np.testing.assert_array_equal(out[0, :2, :2], np.broadcast_to([0, 0, 64], (2, 2, 3)))


def test_uniform_map_is_all_blue_and_keeps_the_scene():
    """A constant map has no range: every cell is jet(0); a white scene gives (255+0)/2 -> 128 and
    (255 + 127.5)/2 = 191.25 -> 191 in blue."""
    images = np.full((2, 2, 2, 3), 255, np.uint8)
    out = overlay_attention(images, np.full((2, 2, 2), 0.25, np.float32))
    np.testing.assert_array_equal(out, np.broadcast_to([128, 128, 191], (2, 2, 2, 3)))
