"""One decoding rule for the builder and the serving graph: every encoding
of the same picture (8-bit, 16-bit, palette, grey, alpha, CMYK, EXIF-rotated JPEG) gives the builder's
stored JPEG and the tower's in-graph decode the same pixels, and both the pixels the rule says."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctl_keras.config import get_config
from ctl_keras.data import crop, image_decode, pipeline
from ctl_keras.savedmodel import signatures

H, W = 48, 80
JPEG_TOLERANCE = 6.0  # mean |difference| in 0..255 after one or two JPEG generations at quality 95


def _picture() -> np.ndarray:
    """Smooth ramps and a red block in the top-left corner (shows where "up" went)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, W)[None]
    img[..., 1] = np.linspace(0, 255, H)[:, None]
    img[..., 2] = 128
    img[:12, :20] = [250, 10, 10]
    return img


def _png(array, mode=None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def _alpha() -> np.ndarray:
    alpha = np.full((H, W, 1), 255, np.uint8)
    alpha[:, W // 2:] = 0  # right half transparent: on white by the rule
    alpha[H // 2:, :W // 4] = 128
    return alpha


def _on_white(rgb, alpha) -> np.ndarray:
    a = alpha.astype(np.float64) / 255
    return np.round(rgb * a + 255 * (1 - a)).astype(np.uint8)


def _encodings():
    """name -> (encoded bytes, the RGB pixels the rule gives, within JPEG tolerance)."""
    rgb = _picture()
    grey = rgb[..., :1].repeat(3, -1)
    alpha = _alpha()
    out = {
        "rgb8-png": (_png(rgb), rgb),
        "rgb8-jpeg": (_jpeg(Image.fromarray(rgb)), rgb),
        "rgb16-png": (tf.io.encode_png(rgb.astype(np.uint16) * 257).numpy(), rgb),
        "grey8-png": (_png(rgb[..., 0], "L"), grey),
        "grey16-png": (tf.io.encode_png(rgb[..., :1].astype(np.uint16) * 257).numpy(), grey),
        "grey-jpeg": (_jpeg(Image.fromarray(rgb[..., 0], "L")), grey),
        "palette-png": (_png(rgb), rgb),
        "rgba8-png": (_png(np.concatenate([rgb, alpha], -1), "RGBA"), _on_white(rgb, alpha)),
        "rgba16-png": (tf.io.encode_png(np.concatenate([rgb, alpha], -1).astype(np.uint16) * 257).numpy(),
                       _on_white(rgb, alpha)),
        "grey-alpha-png": (_png(np.concatenate([rgb[..., :1], alpha], -1), "LA"), _on_white(grey, alpha)),
        "cmyk-jpeg": (_jpeg(Image.fromarray(rgb).convert("CMYK")), rgb),
    }
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    out["palette-png"] = (buf.getvalue(), np.asarray(pal.convert("RGB")))
    red = int(np.asarray(pal)[0, 0])  # the red block's palette entry, made transparent
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=red)
    expected = np.asarray(pal.convert("RGB")).copy()
    expected[np.asarray(pal) == red] = 255
    out["palette-transparent-png"] = (buf.getvalue(), expected)
    # A phone photo: the sensor's raw frame stored, EXIF says "rotate 90° clockwise to display".
    raw = np.ascontiguousarray(np.rot90(rgb, k=1))  # the displayed picture, rotated back
    exif = Image.Exif()
    exif[0x0112] = 6
    out["exif6-jpeg"] = (_jpeg(Image.fromarray(raw), exif=exif.tobytes()), rgb)
    for orientation, raw_of in {3: lambda x: x[::-1, ::-1], 8: lambda x: np.rot90(x, k=3),
                                2: lambda x: x[:, ::-1], 5: lambda x: np.transpose(x, (1, 0, 2))}.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        out[f"exif{orientation}-jpeg"] = (_jpeg(Image.fromarray(np.ascontiguousarray(raw_of(rgb))), exif=exif.tobytes()), rgb)
    return out


ENCODINGS = _encodings()


def _builder_stores(tmp_path, name, data) -> np.ndarray:
    """What build_dataset writes for this file as a product image, decoded as training decodes it."""
    path = tmp_path / f"{name}.{'jpg' if name.endswith('jpeg') else 'png'}"
    path.write_bytes(data)
    assert crop.check_image(str(path)) is None
    return pipeline.decode_image(crop.product_jpeg(str(path))).numpy()


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_builder_and_serving_graph_decode_alike(tmp_path, name):
    data, expected = ENCODINGS[name]
    stored = _builder_stores(tmp_path, name, data)
    served = image_decode.decode_user_image(tf.constant(data)).numpy()
    assert stored.shape == served.shape == expected.shape, (stored.shape, served.shape)
    assert np.abs(stored - served).mean() < JPEG_TOLERANCE, name  # the builder adds one JPEG generation
    assert np.abs(served - expected.astype(np.float32)).mean() < JPEG_TOLERANCE, name
    assert np.abs(stored - expected.astype(np.float32)).mean() < JPEG_TOLERANCE, name


@pytest.mark.parametrize("name", ["grey16-png", "rgba8-png", "cmyk-jpeg", "exif6-jpeg"])
def test_the_tower_input_equals_the_training_view_of_what_the_builder_stored(tmp_path, name):
    """preprocess_bytes (the SavedModel's image_bytes path) on the user's file vs the eval view that
    training and evaluation compute from the builder's record."""
    config = get_config("synthetic", smoke=True)
    data, _ = ENCODINGS[name]
    stored = _builder_stores(tmp_path, name, data)
    tower = signatures.preprocess_bytes(tf.constant([data]), config).numpy()[0]
    trained = pipeline.eval_view(tf.constant(stored), config).numpy()
    assert np.abs(tower - trained).mean() < JPEG_TOLERANCE


def test_scene_boxes_are_read_in_the_displayed_frame(tmp_path):
    """An EXIF-6 scene: the crop box (top third of the displayed picture) cuts the displayed pixels."""
    data, expected = ENCODINGS["exif6-jpeg"]
    path = tmp_path / "scene.jpg"
    path.write_bytes(data)
    cropped, full = crop.scene_jpegs(str(path), (0.0, 0.0, 1.0, 1 / 3))
    full_px, crop_px = pipeline.decode_image(full).numpy(), pipeline.decode_image(cropped).numpy()
    assert full_px.shape == (H, W, 3) and crop_px.shape == (H // 3, W, 3)
    assert np.abs(crop_px - expected[:H // 3].astype(np.float32)).mean() < JPEG_TOLERANCE


def test_orientation_parse_survives_garbage():
    """Malformed EXIF, none at all, or a PNG: orientation 1, never an error."""
    rgb = Image.fromarray(_picture())
    plain = _jpeg(rgb)
    broken = plain[:2] + b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + plain[2:]
    for data in (plain, broken, _png(_picture()), b"\xff\xd8\xff"):
        assert int(image_decode.exif_orientation(tf.constant(data))) == 1
