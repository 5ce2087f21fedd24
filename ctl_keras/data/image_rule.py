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
  - EXIF orientation of a JPEG (tag 0x0112, values 2..8) is applied: the pixels are those a browser or
    a phone shows, and product / scene boxes are read in that frame. PNG eXIf chunks are not applied;
  - ICC profiles and gamma chunks are ignored (sRGB assumed) by both sides.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


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


def oriented(img: Image.Image) -> Image.Image:
    """The image as displayed: a JPEG's EXIF orientation applied (PNGs as stored)."""
    if img.format != "JPEG":
        return img
    return ImageOps.exif_transpose(img)


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, from the header alone (no decode): a JPEG whose EXIF orientation
    turns it by 90 degrees (values 5..8) has its sides swapped. Pixel boxes are normalized by this."""
    width, height = img.size
    if img.format == "JPEG" and img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        return height, width
    return width, height


def header_size(path: str, cache: dict) -> tuple[int, int] | str:
    """displayed_size of the image file at `path` (header only), or why it cannot be used:
    "missing_image" / "corrupt_image". Memoized in `cache` (readers ask once per scene)."""
    if path not in cache:
        if not os.path.isfile(path):
            cache[path] = "missing_image"
        else:
            try:
                with Image.open(path) as img:  # lazy: reads the header only
                    cache[path] = displayed_size(img)
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
                cache[path] = "corrupt_image"
    return cache[path]


def load_rgb(source) -> Image.Image:
    """A path or file object -> RGB PIL image by the rule (a full decode: truncated files raise here)."""
    with Image.open(source) as img:
        img.load()
        return to_rgb(oriented(img))
