"""The EXIF orientation rule is one rule (data/image_rule.py): the builder (Python, on files) and the
serving graph (image_decode.py, on request bytes) find the same orientation in the same bytes, so a
rotated photo is cropped and served in the same frame: multi-picture JPEGs (MPO) too, EXIF behind
many segments or large APP blocks, and up to the same documented marker limit."""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctl_keras.data import crop, image_decode, image_rule, pipeline
from tests.data.test_image_rule import H, W, _picture

TOLERANCE = 6.0  # mean |difference| in 0..255 after one or two JPEG generations at quality 95


def _stored() -> Image.Image:
    """The sensor's frame of _picture() for Orientation 6 ("rotate 90 degrees clockwise to display")."""
    return Image.fromarray(np.ascontiguousarray(np.rot90(_picture(), k=1)))


def _exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _plain_jpeg() -> bytes:
    buf = io.BytesIO()
    _stored().save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _with_segments(*segments: bytes) -> bytes:
    """_plain_jpeg() with `segments` inserted right after SOI (before its JFIF APP0)."""
    plain = _plain_jpeg()
    return plain[:2] + b"".join(segments) + plain[2:]


def _tiff(orientation: int, *, little: bool = False, kind: int = 3, count: int = 1) -> bytes:
    """A TIFF header and IFD0 holding one Orientation entry of the given type and count."""
    e = "<" if little else ">"
    value = struct.pack(e + "HH", orientation, 0) if kind == 3 else struct.pack(e + "I", orientation)
    return ((b"II*\0" if little else b"MM\0*") + struct.pack(e + "I", 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHI", 0x0112, kind, count) + value + b"\0\0\0\0")


def _app1(orientation: int = 6, **kw) -> bytes:
    return _segment(0xE1, b"Exif\0\0" + _tiff(orientation, **kw))


def _builder(tmp_path, data: bytes, name: str = "photo.jpg") -> np.ndarray:
    """The pixels build_dataset stores for this file, decoded as training decodes them."""
    path = tmp_path / name
    path.write_bytes(data)
    assert crop.check_image(str(path)) is None
    return pipeline.decode_image(crop.product_jpeg(str(path))).numpy()


def _graph(data: bytes) -> np.ndarray:
    return image_decode.decode_user_image(tf.constant(data)).numpy()


def _assert_displayed(tmp_path, data: bytes, expected: np.ndarray, name: str = "photo.jpg"):
    stored, served = _builder(tmp_path, data, name), _graph(data)
    assert stored.shape == served.shape == expected.shape, (stored.shape, served.shape, expected.shape)
    assert np.abs(stored - served).mean() < TOLERANCE
    assert np.abs(served - expected.astype(np.float32)).mean() < TOLERANCE


def test_mpo_is_rotated_by_builder_and_graph_alike(tmp_path):
    """A phone's multi-picture JPEG (PIL opens it as "MPO") with Orientation 6: both sides show it
    upright (48x80), and a pixel box is normalized by the displayed 80x48."""
    buf = io.BytesIO()
    _stored().save(buf, format="MPO", quality=95, save_all=True, append_images=[Image.new("RGB", (H, W))],
                   exif=_exif(6))
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "MPO" and img.size == (H, W)  # really an MPO, stored sideways
    _assert_displayed(tmp_path, data, _picture())
    assert image_rule.header_size(str(tmp_path / "photo.jpg"), {}) == (W, H)
    cropped, _ = crop.scene_jpegs(str(tmp_path / "photo.jpg"), (0.0, 0.0, 1.0, 0.25))
    top = pipeline.decode_image(cropped).numpy()
    assert top.shape == (H // 4, W, 3) and top[:8, :16, 0].mean() > 200  # the red block is on top


def test_exif_behind_many_com_segments_and_a_large_app2(tmp_path):
    """40 COM segments and a 160 KiB run of APP2 blocks before the EXIF APP1: PIL finds the EXIF, and
    so must the graph (it used to stop after 16 segments or 128 KiB)."""
    coms = [_segment(0xFE, b"comment %d" % i) for i in range(40)]
    app2 = [_segment(0xE2, bytes(60_000)) for _ in range(3)]
    for name, data in {"coms": _with_segments(*coms, _app1(6)), "app2": _with_segments(*app2, _app1(6))}.items():
        assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6, name  # PIL does see it
        _assert_displayed(tmp_path, data, _picture(), f"{name}.jpg")


def test_beyond_the_marker_limit_neither_side_rotates(tmp_path):
    """The documented limit: EXIF after more than MAX_MARKERS markers is not looked for, by either side."""
    data = _with_segments(*[_segment(0xFE, b"x")] * image_rule.MAX_MARKERS, _app1(6))
    _assert_displayed(tmp_path, data, np.asarray(_stored()))


def test_xmp_orientation_and_a_second_exif_block_are_not_followed(tmp_path):
    """PIL alone would rotate by an XMP tiff:Orientation and merge two EXIF blocks; the rule reads the
    first EXIF block only, on both sides."""
    xmp = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x tiff:Orientation=\"6\"/>")
    _assert_displayed(tmp_path, _with_segments(xmp), np.asarray(_stored()), "xmp.jpg")
    _assert_displayed(tmp_path, _with_segments(_app1(1), _app1(6)), np.asarray(_stored()), "two.jpg")
    _assert_displayed(tmp_path, _with_segments(_app1(6, little=True, kind=4)), _picture(), "long.jpg")


def _variants(seed: int = 0, n: int = 300):
    """Seeded corruptions of JPEG headers that carry an orientation: flipped bytes, cuts, lengths."""
    rng = np.random.default_rng(seed)
    plain = _plain_jpeg()
    bases = [_with_segments(_app1(o, little=bool(o % 2), kind=3 + o % 2, count=1 + (o == 7)))
             for o in range(1, 9)] + [_with_segments(_segment(0xFE, b"c"), b"\xff\xff", _app1(8))]
    for _ in range(n):
        data = bytearray(bases[int(rng.integers(len(bases)))])
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(2, 60))
            data[i] = int(rng.integers(256))
        if rng.random() < 0.2:
            data = data[:int(rng.integers(3, 60))]
        yield bytes(data)
    yield plain[:3]
    yield b"\x89PNG\r\n\x1a\n"


def test_python_and_graph_parsers_agree_on_corrupted_headers():
    """The builder's parser and the graph's read the same orientation from every corrupted header."""
    parse = tf.function(image_decode.exif_orientation)
    values = set()
    for data in _variants():
        want = image_rule.exif_orientation(io.BytesIO(data))
        assert int(parse(tf.constant(data))) == want, data[:60]
        values.add(want)
    assert len(values) >= 5  # the corruptions leave many orientations readable, not all of them 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_parses_alike(orientation):
    data = _with_segments(_app1(orientation))
    assert image_rule.exif_orientation(io.BytesIO(data)) == orientation
    assert int(image_decode.exif_orientation(tf.constant(data))) == orientation
