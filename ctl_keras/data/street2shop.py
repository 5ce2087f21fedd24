"""Reader for Exact Street2Shop (Kiapour et al., ICCV 2015), the paper's "fashion1".

Layout under `street2shop_dir`:
  meta/json/{train,test}_pairs_<cat>.json  [{"photo": int, "product": int,
                                             "bbox": {"left", "top", "width", "height"}}]  (pixels)
  meta/json/retrieval_<cat>.json           [{"photo": int, "product": int}]  shop photos of products
  photos/photos.txt                        "<zero-padded id>,<url>" lines (used by the downloader)

Both scene and product are photos. A pair's scene is its street photo ("photo"). A Street2Shop
product is an item with one or more shop photos listed in retrieval_<cat>.json; CTL needs one
product image, so we use the product's lowest-numbered shop photo that is present in `images_dir`
(deterministic, and robust to the usual few failed downloads). Its photo id is the `product_id`
we emit, so product ids are photo ids, as for scenes.

The original train/test split is ignored: both files are read and the builder re-splits by scene.
Pixel boxes are normalized by the real size of the scene image (read from the file header).
Images are `images_dir/<id>.jpg`, with the id either as a plain integer or zero-padded to 9 digits
as in photos.txt.
"""

from __future__ import annotations

import collections
import glob
import os
import re


from ctl_keras.data import image_rule
from ctl_keras.data.crop import clip_box
from ctl_keras.data.stl import RawPair, load_json

_PAIRS_RE = re.compile(r"^(train|test)_pairs_(.+)\.json$")

def image_path(images_dir: str | os.PathLike, photo_id: int | str, role: str = "scene") -> str:
    """Existing `<id>.jpg` or `<000000id>.jpg`; the plain name when neither exists."""
    plain = os.path.join(os.fspath(images_dir), f"{int(photo_id)}.jpg")
    padded = os.path.join(os.fspath(images_dir), f"{int(photo_id):09d}.jpg")
    return padded if not os.path.exists(plain) and os.path.exists(padded) else plain


def _pair_files(street2shop_dir: str) -> dict[str, list[str]]:
    meta = os.path.join(street2shop_dir, "meta", "json")
    if not os.path.isdir(meta):
        raise FileNotFoundError(f"Street2Shop metadata directory not found: {meta}")
    files = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(meta, "*_pairs_*.json"))):
        match = _PAIRS_RE.match(os.path.basename(path))
        if match:
            files[match.group(2)].append(path)
    if not files:
        raise FileNotFoundError(f"no {{train,test}}_pairs_<category>.json files in {meta}")
    return dict(files)


def _product_photos(street2shop_dir: str, cat: str) -> dict[int, list[int]]:
    path = os.path.join(street2shop_dir, "meta", "json", f"retrieval_{cat}.json")
    photos = collections.defaultdict(list)
    for row in load_json(path, "Street2Shop retrieval"):
        try:
            photos[int(row["product"])].append(int(row["photo"]))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed catalogue row only matters if a pair needs that product
    return {product: sorted(ids) for product, ids in photos.items()}


def _normalize(bbox: dict, width: int, height: int) -> tuple[tuple[float, ...] | None, bool]:
    """Pixel box -> (normalized box, clipped) under the readers' one rule (crop.clip_box)."""
    try:
        left, top = float(bbox["left"]), float(bbox["top"])
        right, bottom = left + float(bbox["width"]), top + float(bbox["height"])
    except (KeyError, TypeError, ValueError):
        return None, False
    return clip_box((left / width, top / height, right / width, bottom / height))


def read_street2shop(street2shop_dir: str | os.PathLike,
                     images_dir: str | os.PathLike) -> tuple[list[RawPair], collections.Counter]:
    """-> (pairs, skipped-row counts by reason); `label` is the file's <cat> (e.g. "dresses").

    Row reasons: "bad_row", "missing_image" / "corrupt_image" (scene photo, needed for its size;
    or no shop photo of the product on disk), "bad_box", "no_product_image" (product has no shop
    photo in retrieval_<cat>.json).
    """
    street2shop_dir = os.fspath(street2shop_dir)
    pairs, skipped, sizes = [], collections.Counter(), {}
    for cat, paths in sorted(_pair_files(street2shop_dir).items()):
        product_photos = _product_photos(street2shop_dir, cat)
        for path in paths:
            rows = load_json(path, "Street2Shop pairs")
            if not isinstance(rows, list):
                raise ValueError(f"Street2Shop pairs file must hold a JSON list: {path}")
            for row in rows:
                reason, pair = _read_row(row, cat, product_photos, images_dir, sizes)
                if reason:
                    skipped[reason] += 1
                else:
                    pairs.append(pair)
    return pairs, skipped


def _read_row(row, cat, product_photos, images_dir, sizes) -> tuple[str | None, RawPair | None]:
    try:
        scene, product, bbox = int(row["photo"]), int(row["product"]), dict(row["bbox"])
    except (KeyError, TypeError, ValueError):
        return "bad_row", None
    size = image_rule.header_size(image_path(images_dir, scene), sizes)
    if isinstance(size, str):
        return size, None
    box, clipped = _normalize(bbox, *size)
    if box is None:
        return "bad_box", None
    shop_photos = product_photos.get(product)
    if not shop_photos:
        return "no_product_image", None
    present = [p for p in shop_photos if os.path.isfile(image_path(images_dir, p))]
    if not present:
        return "missing_image", None
    return None, RawPair(str(scene), str(present[0]), cat, box, clipped)
