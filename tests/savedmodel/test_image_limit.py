"""The image_bytes signatures refuse images above the export's pixel limit, from the header alone."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctl_keras.config import get_config
from ctl_keras.model.ctl import build_ctl
from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS, exporter
from ctl_keras.savedmodel.signatures import header_size

LIMIT = 80 * 80  # small, so the oversized test images stay small too


def _encode(width, height, fmt, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    config = get_config("synthetic", smoke=True)
    tf.keras.utils.set_random_seed(0)
    models = build_ctl(config)
    dirs = exporter.export_models(models, config, str(tmp_path_factory.mktemp("export")), max_image_pixels=LIMIT)
    return config, models, dirs


def test_header_size_reads_jpeg_and_png_without_decoding():
    for fmt in ("JPEG", "PNG"):
        got = header_size(tf.constant(_encode(37, 21, fmt))).numpy().tolist()
        assert got == [21, 37], fmt
    # A 50 000 x 40 000 PNG header: 2 G pixels would never be decoded; only the header is read.
    big = bytearray(_encode(8, 8, "PNG"))
    big[16:24] = (50_000).to_bytes(4, "big") + (40_000).to_bytes(4, "big")
    assert header_size(tf.constant(bytes(big))).numpy().tolist() == [40_000, 50_000]


@pytest.mark.slow
def test_oversized_images_are_invalid_argument_and_normal_ones_unchanged(served):
    config, models, dirs = served
    scene = tf.saved_model.load(dirs["scene_tower"]).signatures["serving_default"]
    product = tf.saved_model.load(dirs["product_tower"]).signatures["serving_default"]
    meta = exporter.read_meta(dirs["scene_tower"])
    assert meta["max_image_pixels"] == LIMIT
    for fmt in ("JPEG", "PNG"):
        big = _encode(81, 80, fmt)  # one pixel column too many
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"image of 80 x 81 = 6480 pixels exceeds the limit of {LIMIT} pixels"):
            scene(image_bytes=tf.constant([big]), category=tf.constant(["shoes"]))
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_image_pixels"):
            product(image_bytes=tf.constant([_encode(10, 10, fmt), big]))
    # At the limit: served, and the same numbers as the exported model without any limit check.
    ok = [_encode(80, 80, "JPEG", seed=1), _encode(64, 50, "PNG", seed=2)]
    got = product(image_bytes=tf.constant(ok))["product_embedding"].numpy()
    from ctl_keras.data.pipeline import decode_image, eval_view

    images = tf.stack([eval_view(decode_image(b), config) for b in ok])
    want = models.product_tower({"image": images})["product_embedding"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_default_limit_is_documented_and_bounded():
    assert DEFAULT_MAX_IMAGE_PIXELS == 4096 * 4096
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "export", "README.md")) as f:
        readme = f.read()
    assert "--max_image_pixels" in readme and "4096" in readme
