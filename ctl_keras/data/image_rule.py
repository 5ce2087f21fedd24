"""The one decoding rule for images that come from users (raw catalogs, scene photos), PIL side.

The builder (PIL, in Beam workers without TensorFlow) and the serving graph (`image_decode.py`, in the
SavedModel) both turn JPEG/PNG bytes into 8-bit RGB by this rule, so training and serving see the same
pixels (tests/data/test_image_rule.py encodes one image every way and compares the two):

  - 8-bit RGB, grey (L, 1-bit), palette: RGB as encoded (grey repeated, palette looked up);
  - 16-bit (grey, grey+alpha, RGB, RGBA PNG): the high byte of each sample (v >> 8);
  - alpha (RGBA, LA, a palette or colour key with transparency): composited on white,
    out = c * a/255 + 255 * (1 - a/255), rounded: a transparent catalog cut-out shows on white, as on
    a web page, never on the black or garbage its transparent pixels happen to hold;
  - CMYK / YCCK JPEG (Adobe): R = (255 - C)(255 - K)/255 (and G, B alike), as libjpeg's users do;
  - EXIF orientation of a JPEG stream (the bytes start FF D8 FF: plain JPEG and the multi-picture MPO
    of phones alike) is applied: the pixels are those a browser or a phone shows, and product / scene
    boxes are read in that frame. Where it is read (`exif_orientation`, mirrored by the graph):
    the marker segments from SOI are walked, at most MAX_MARKERS markers (0xFF fill bytes count), up
    to SOS; the first APP1 starting "Exif\\0\\0" is the EXIF block; in its IFD0 (entries that lie
    inside the block) the first tag 0x0112 of type SHORT or LONG and count 1 with a value 1..8 is the
    orientation. Anything else (no such block, malformed, past the limit) is 1, upright. XMP
    orientation, later EXIF blocks and PNG eXIf chunks are not followed (PIL alone would follow some);
  - ICC profiles and gamma chunks are ignored (sRGB assumed) by both sides.
"""

from __future__ import annotations

import contextlib
import os
import struct

import numpy as np
from PIL import Image, UnidentifiedImageError

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
JPEG_MAGIC = b"\xff\xd8\xff"
# Real photos put EXIF within the first few segments (the EXIF standard: right after SOI, or after a
# JFIF APP0); the bound keeps the graph's loop cheap on a hostile request (256 four-byte segments:
# ~10 ms of graph time, measured). Both sides stop at the same marker.
MAX_MARKERS = 256
ORIENTATION_TAG = 0x0112
STANDALONE_MARKERS = (0x01, *range(0xD0, 0xD9))  # TEM, RSTn, SOI: no length field follows
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info


def _on_white(rgba: np.ndarray) -> Image.Image:
    """uint8 [H, W, 4] -> RGB composited on white (the graph does the same arithmetic in float32)."""
    colour, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3:].astype(np.float32) / np.float32(255)
    out = colour * alpha + np.float32(255) * (np.float32(1) - alpha)
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), "RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """A loaded PIL image -> 8-bit RGB by the rule of the module docstring (orientation not applied)."""
    if img.mode in _SIXTEEN_BIT:
        grey = (np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if _has_alpha(img):
        return _on_white(np.asarray(img.convert("RGBA")))
    return img.convert("RGB")


def _read(f, pos: int, n: int) -> bytes:
    """n bytes at pos, zeros past the end of the file (as the graph pads)."""
    f.seek(pos)
    data = f.read(max(0, n))
    return data + bytes(max(0, n) - len(data))


def _ifd0_orientation(tiff: bytes) -> int:
    """The orientation in an EXIF block's TIFF data (the bytes after "Exif\\0\\0"), or 1."""
    order = {b"II*\0": "<", b"MM\0*": ">"}.get(tiff[:4])
    if order is None or len(tiff) < 8:
        return 1
    u16 = lambda at: struct.unpack_from(order + "H", tiff, at)[0]  # noqa: E731
    u32 = lambda at: struct.unpack_from(order + "I", tiff, at)[0]  # noqa: E731
    ifd = u32(4)
    if ifd + 2 > len(tiff):
        return 1
    for i in range(u16(ifd)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return 1
        if u16(entry) == ORIENTATION_TAG:
            kind, count = u16(entry + 2), u32(entry + 4)
            value = u16(entry + 8) if kind == 3 else u32(entry + 8) if kind == 4 else 0
            return value if count == 1 and 1 <= value <= 8 else 1
    return 1


def exif_orientation(f) -> int:
    """1..8: the orientation of the image in binary file object `f` by the rule of the module
    docstring (image_decode.exif_orientation is the same walk in the graph); 1 for a non-JPEG."""
    if _read(f, 0, 3) != JPEG_MAGIC:
        return 1
    pos = 2
    for _ in range(MAX_MARKERS):
        head = _read(f, pos, 10)
        if head[0] != 0xFF:
            return 1
        marker, length = head[1], head[2] * 256 + head[3]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
        elif marker in STANDALONE_MARKERS:
            pos += 2
        elif marker in (0x00, 0xD9, 0xDA) or length < 2:  # not a marker, EOI, SOS (no EXIF past it)
            return 1
        elif marker == 0xE1 and length >= 8 and head[4:10] == b"Exif\0\0":
            return _ifd0_orientation(_read(f, pos + 10, length - 8))
        else:
            pos += 2 + length
    return 1


def orient(img: Image.Image, orientation: int) -> Image.Image:
    """Apply EXIF orientation 1..8 (image_decode.orient does the same in the graph)."""
    return img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img


def _binary(source):
    """A binary file object for a path (opened) or a file object (rewound, left open)."""
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb")
    return contextlib.nullcontext(source)


def header_size(path: str, cache: dict) -> tuple[int, int] | str:
    """(width, height) of the image file at `path` as displayed (EXIF orientation applied; headers
    only, no decode), or why it cannot be used:
    "missing_image" / "corrupt_image". Memoized in `cache` (readers ask once per scene)."""
    if path not in cache:
        if not os.path.isfile(path):
            cache[path] = "missing_image"
        else:
            try:
                with open(path, "rb") as f:
                    turned = exif_orientation(f) in (5, 6, 7, 8)  # 90 degrees: the sides swap
                    f.seek(0)
                    with Image.open(f) as img:  # lazy: reads the header only
                        width, height = img.size
                cache[path] = (height, width) if turned else (width, height)
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
                cache[path] = "corrupt_image"
    return cache[path]


def load_rgb(source) -> Image.Image:
    """A path or file object -> RGB PIL image by the rule (a full decode: truncated files raise here)."""
    with _binary(source) as f:
        orientation = exif_orientation(f)
        f.seek(0)
        with Image.open(f) as img:
            img.load()
            return orient(to_rgb(img), orientation)
