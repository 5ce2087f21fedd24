"""The CTL crop (paper §3.3, docs/design.md §2): remove the product from its scene.

The box math is pure; the PIL helpers at the end apply a crop to image files for the builder.

Pure functions on normalized boxes `(left, top, right, bottom)` in [0, 1], origin top-left.
Because coordinates are normalized, "5% of the image side" is simply 0.05: 5% of the width
horizontally and 5% of the height vertically, and the image area is 1.
"""

from __future__ import annotations

import io
import os
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from ctl_keras.data import image_rule

Box = tuple[float, float, float, float]

# Canonical candidate order; on equal area the earliest one wins, so results never depend on
# the order of `sides` a caller passes.
SIDES = ("top", "bottom", "left", "right")

# Boxes overrun the image by a pixel or two in both releases (annotators' Street2Shop boxes, rounding
# in STL's normalized ones): up to this fraction of the side is clipped, beyond it the box is bad.
BOX_TOLERANCE = 0.02

# Float slack for the area threshold: 0.25 - 0.05 is 0.2 exactly on paper but not always in
# binary floating point, and the boundary case must be kept.
_EPS = 1e-9


def check_box(box: Sequence[float]) -> str | None:
    """None if `box` is a valid normalized box, else a short reason why not."""
    if len(box) != 4:
        return f"expected 4 numbers, got {len(box)}"
    try:
        left, top, right, bottom = (float(v) for v in box)
    except (TypeError, ValueError):
        return "non-numeric coordinate"
    if not all(0.0 <= v <= 1.0 for v in (left, top, right, bottom)):
        return "coordinate outside [0, 1]"
    if left >= right or top >= bottom:
        return "left >= right or top >= bottom"
    return None


def clip_box(box: Sequence[float], tolerance: float = BOX_TOLERANCE) -> tuple[Box | None, bool]:
    """The one box rule of every reader: -> (box clipped to [0, 1], whether clipping changed it).

    A coordinate up to `tolerance` outside [0, 1] is clipped (boxes that overrun the image by a
    pixel or two, rounding in the STL release); further out, non-numeric, or empty after clipping:
    (None, False), a bad box.
    """
    # Unrolled (no generators): this runs once per pairs-file row, a million times on a large catalog.
    if len(box) != 4:
        return None, False
    try:
        left, top, right, bottom = float(box[0]), float(box[1]), float(box[2]), float(box[3])
    except (TypeError, ValueError):
        return None, False
    low, high = -tolerance, 1.0 + tolerance
    if not (low <= left <= high and low <= top <= high and low <= right <= high and low <= bottom <= high):
        return None, False  # also refuses NaN
    values = (left, top, right, bottom)
    clipped = (min(1.0, max(0.0, left)), min(1.0, max(0.0, top)), min(1.0, max(0.0, right)),
               min(1.0, max(0.0, bottom)))
    if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
        return None, False
    return clipped, clipped != values


def expand_box(box: Sequence[float], expand: float = 0.05) -> Box:
    """Grow `box` by `expand` on every side, clipped to the image."""
    left, top, right, bottom = box
    return (max(0.0, left - expand), max(0.0, top - expand),
            min(1.0, right + expand), min(1.0, bottom + expand))


def candidate_regions(expanded: Sequence[float], sides: Sequence[str]) -> list[tuple[str, Box]]:
    """Full-width / full-height regions entirely above, below, left or right of `expanded`."""
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        raise ValueError(f"unknown crop side(s) {unknown}; expected some of {SIDES}")
    left, top, right, bottom = expanded
    regions = {
        "top": (0.0, 0.0, 1.0, top),
        "bottom": (0.0, bottom, 1.0, 1.0),
        "left": (0.0, 0.0, left, 1.0),
        "right": (right, 0.0, 1.0, 1.0),
    }
    return [(side, regions[side]) for side in SIDES if side in sides]


def area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def ctl_crop(box: Sequence[float], sides: Sequence[str], expand: float = 0.05,
             min_area: float = 0.2) -> tuple[Box | None, str]:
    """The largest allowed region of the scene that does not contain the (expanded) product box.

    Returns `(crop_box, side)` with side in SIDES, or `(None, reason)` with reason "bad_box"
    (invalid input box) or "crop_too_small" (best region under `min_area` of the image; a region
    of exactly `min_area` is kept). Ties go to the earliest side in SIDES order.
    """
    if check_box(box) is not None:
        return None, "bad_box"
    best_side, best_box, best_area = None, None, -1.0
    for side, region in candidate_regions(expand_box(box, expand), sides):
        region_area = area(region)
        if region_area > best_area + _EPS:  # strictly larger: ties keep the earlier side
            best_side, best_box, best_area = side, region, region_area
    if best_box is None or best_area < min_area - _EPS:
        return None, "crop_too_small"
    return best_box, best_side


def union_box(boxes: Sequence[Sequence[float]]) -> Box:
    """The smallest box holding every box of `boxes` (at least one)."""
    if not boxes:
        raise ValueError("union_box needs at least one box")
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def ctl_crop_all(boxes: Sequence[Sequence[float]], sides: Sequence[str], expand: float = 0.05,
                 min_area: float = 0.2) -> tuple[Box | None, str]:
    """ctl_crop for a product the scene shows several times (two identical chairs): no copy may remain.

    A candidate region (a full-width or full-height strip) avoids every expanded box exactly when it
    avoids their union, so this is ctl_crop of the union; any invalid box gives "bad_box".
    """
    if not boxes or any(check_box(b) is not None for b in boxes):
        return None, "bad_box"
    return ctl_crop(union_box(boxes), sides, expand, min_area)


def map_box(box: Sequence[float], crop_box: Sequence[float]) -> Box | None:
    """`box` (full-scene coordinates) in the frame of `crop_box`, clipped to it; None if disjoint."""
    c_left, c_top, c_right, c_bottom = crop_box
    left, top = max(box[0], c_left), max(box[1], c_top)
    right, bottom = min(box[2], c_right), min(box[3], c_bottom)
    if right - left <= _EPS or bottom - top <= _EPS:
        return None
    width, height = c_right - c_left, c_bottom - c_top
    return ((left - c_left) / width, (top - c_top) / height,
            (right - c_left) / width, (bottom - c_top) / height)


def to_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Normalized box -> PIL crop tuple, at least one pixel wide and high."""
    left, top = int(round(box[0] * width)), int(round(box[1] * height))
    right, bottom = int(round(box[2] * width)), int(round(box[3] * height))
    left, top = min(left, width - 1), min(top, height - 1)
    return left, top, max(right, left + 1), max(bottom, top + 1)


# ---------------------------------------------------------------- pixels (PIL only, no TF: runs in workers)
JPEG_QUALITY = 95


def _is_file(path: str) -> bool:
    if "://" not in path:
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems
    return FileSystems.exists(path)


def _source(path: str):
    """A local path as is; a URL (gs://...) read through Beam's filesystems."""
    if "://" not in path:
        return path
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return io.BytesIO(f.read())


# Degenerate images and crops: a side under MIN_SIDE pixels or a long side over
# MAX_ASPECT times the short one gives the backbone nothing to see (a 1x1 scene, a 9x20000 crop of a
# strip). Real photos and the paper's 400-px STL images are far inside both limits; a 96-px synthetic
# scene's thinnest allowed crop (1/5 of its height) is 19 px.
MIN_SIDE = 16
MAX_ASPECT = 10.0


def degenerate(width: float, height: float) -> bool:
    return min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height)


def inspect_image(path: str) -> tuple[str | None, tuple[int, int] | None]:
    """(None, displayed (width, height)) if `path` is an image the decoding rule turns into pixels
    (data/image_rule.py) and is not degenerate; else ("missing_image" / "corrupt_image" /
    "degenerate_image", size or None)."""
    if not _is_file(path):
        return "missing_image", None
    try:
        size = image_rule.load_rgb(_source(path)).size  # a full decode: truncated files only fail here
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return "corrupt_image", None
    return ("degenerate_image" if degenerate(*size) else None), size


def check_image(path: str) -> str | None:
    """The reason of inspect_image, or None when the image is usable."""
    return inspect_image(path)[0]


def crop_is_degenerate(crop_box: Sequence[float], size: tuple[int, int]) -> bool:
    """Whether the crop of a `size` (width, height) scene is under the limits above."""
    left, top, right, bottom = crop_box
    return degenerate((right - left) * size[0], (bottom - top) * size[1])


def _jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _rgb(path: str) -> Image.Image:
    """The image's pixels by the one decoding rule of builder and serving graph (EXIF orientation
    applied, so boxes are read in the frame a browser shows)."""
    return image_rule.load_rgb(_source(path))


def scene_jpegs(scene_path: str, crop_box: Sequence[float]) -> tuple[bytes, bytes]:
    """JPEGs of (cropped scene, full scene)."""
    scene = _rgb(scene_path)
    return _jpeg(scene.crop(to_pixels(crop_box, *scene.size))), _jpeg(scene)


def product_jpeg(path: str) -> bytes:
    return _jpeg(_rgb(path))
