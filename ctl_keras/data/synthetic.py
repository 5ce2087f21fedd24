"""A synthetic "Complete the Look" dataset, written in the STL format so the normal builder reads it.

Each scene draws a latent style s. Style s gives every category its own look (colour pair + pattern),
drawn independently per (style, category), so a style's shoes do not resemble its tops: the visible
items reveal s, s decides the hidden item's look, yet raw pixel similarity between scene and hidden
product stays near chance (as in the paper). Products recur: each (style, category) has a small
catalog of shape/shade variants, each its own signature.

Output under out_dir: `pairs.json`, `categories.json`, `images/<signature>.jpg`, and `styles.json`
(metadata for tests/analysis only, the builder ignores it):
`{"scenes": {sig: style}, "products": {sig: {"style", "category", "variant"}}}`.
"""

from __future__ import annotations

import colorsys
import os
from typing import Any

import numpy as np
from absl import logging
from PIL import Image, ImageDraw

from ctl_keras.utils import atomic
from ctl_keras import spec as spec_lib

CATEGORIES = ("tops", "pants", "shoes", "handbags", "sunglasses")
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "dots", "diagonal")
VARIANTS_PER_LOOK = 5
# Chance that a scene's figure does not wear the item (only these two are ever left out).
OMIT_PROB = {"handbags": 0.3, "sunglasses": 0.3}
# Item extents in figure units (u: horizontal from the figure's centre, v: down from its top, both in
# figure heights). Shoes sit at the bottom and sunglasses at the top so the CTL crop keeps a large region.
EXTENT = {"tops": (-0.23, 0.15, 0.23, 0.47), "pants": (-0.13, 0.44, 0.13, 0.88),
          "shoes": (-0.13, 0.79, 0.13, 0.95), "handbags": (0.13, 0.33, 0.31, 0.56),
          "sunglasses": (-0.065, 0.05, 0.065, 0.1)}
SKIN = ((233, 196, 160), (198, 150, 110), (141, 95, 66), (95, 62, 45), (250, 218, 190))


def _signature(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        sig = rng.bytes(16).hex()
        if sig not in taken:
            taken.add(sig)
            return sig


def _colour(rng: np.random.Generator) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.35, 1.0), rng.uniform(0.3, 0.95))
    return np.array([r, g, b]) * 255.0


def _look(rng: np.random.Generator) -> dict[str, Any]:
    return {"c1": _colour(rng), "c2": _colour(rng), "pattern": PATTERNS[rng.integers(len(PATTERNS))],
            "freq": float(rng.choice([3.0, 4.0, 6.0]))}


def _texture(look, shade, box_px, window, colour_jitter) -> np.ndarray:
    """Pattern over `window` (l, t, r, b px), in coordinates relative to the item box so it scales."""
    x0, y0, x1, y1 = box_px
    left, t, r, b = window
    u = (np.arange(left, r) + 0.5 - x0)[None, :] / max(x1 - x0, 1.0)
    v = (np.arange(t, b) + 0.5 - y0)[:, None] / max(y1 - y0, 1.0)
    k, p = look["freq"], look["pattern"]
    if p == "solid":
        sel = np.zeros((b - t, r - left), bool)
    elif p == "hstripes":
        sel = np.floor(v * 2 * k) % 2 == 1
    elif p == "vstripes":
        sel = np.floor(u * k) % 2 == 1
    elif p == "checks":
        sel = (np.floor(u * k) + np.floor(v * k)) % 2 == 1
    elif p == "dots":
        sel = ((u * k) % 1 - 0.5) ** 2 + ((v * k) % 1 - 0.5) ** 2 < 0.09
    else:
        sel = np.floor((u + v) * k) % 2 == 1
    sel = np.broadcast_to(sel, (b - t, r - left))
    c1 = np.clip(look["c1"] * shade + colour_jitter, 0, 255)
    c2 = np.clip(look["c2"] * shade + colour_jitter, 0, 255)
    return np.where(sel[..., None], c2, c1).astype(np.uint8)


def _shape(draw: ImageDraw.ImageDraw, category: str, shape: int, P) -> None:
    """Draw the item's mask; P(u, v) maps figure units to pixels. `shape` picks a variant's cut."""
    poly = lambda pts: draw.polygon([P(u, v) for u, v in pts], fill=255)
    if category == "tops":
        w = 0.11 + 0.015 * (shape % 3)
        sleeve_end = (0.2, 0.27, 0.44)[shape % 3]
        poly([(-w - 0.02, 0.17), (w + 0.02, 0.17), (w, 0.47), (-w, 0.47)])
        for s in (-1, 1):
            poly([(s * (w + 0.02), 0.17), (s * (w + 0.07), 0.19), (s * (w + 0.08), sleeve_end),
                  (s * (w + 0.02), sleeve_end)])
    elif category == "pants":
        hem = (0.03, 0.045, 0.07, 0.09)[shape % 4]
        poly([(-0.11, 0.45), (0.11, 0.45), (0.115, 0.53), (-0.115, 0.53)])
        for s in (-1, 1):
            poly([(s * 0.115, 0.5), (s * 0.005, 0.5), (s * (0.06 - hem), 0.87), (s * (0.06 + hem), 0.87)])
    elif category == "shoes":
        for s in (-1, 1):
            c = s * 0.06
            if shape % 3 == 0:  # boot
                poly([(c - 0.035, 0.8), (c + 0.035, 0.8), (c + 0.035, 0.92), (c + s * 0.065, 0.94),
                      (c - 0.035, 0.94)])
            elif shape % 3 == 1:  # sneaker: sole ellipse plus a toe towards the outside
                draw.ellipse(_sorted_box([P(c - 0.035, 0.87), P(c + 0.035, 0.945)]), fill=255)
                draw.ellipse(_sorted_box([P(c, 0.895), P(c + s * 0.065, 0.945)]), fill=255)
            else:  # heel
                poly([(c - 0.03, 0.86), (c + 0.03, 0.86), (c + s * 0.065, 0.93), (c + s * 0.065, 0.945),
                      (c - s * 0.03, 0.945), (c - s * 0.03, 0.9)])
    elif category == "handbags":
        top = 0.41 + 0.02 * (shape % 2)
        if shape % 3 == 0:
            poly([(0.15, top), (0.29, top), (0.29, 0.55), (0.15, 0.55)])
        elif shape % 3 == 1:
            poly([(0.17, top), (0.27, top), (0.31, 0.55), (0.13, 0.55)])
        else:
            draw.chord(_sorted_box([P(0.14, top - 0.05), P(0.3, 0.56)]), 0, 180, fill=255)
        strap = max(2, int(abs(P(0.012, 0)[0] - P(0, 0)[0])))
        draw.arc(_sorted_box([P(0.17, 0.33), P(0.27, top + 0.06)]), 180, 360, fill=255, width=strap)
    else:  # sunglasses
        for s in (-1, 1):
            lens = [P(s * 0.03 - 0.026, 0.058), P(s * 0.03 + 0.026, 0.095)]
            (draw.ellipse if shape % 2 == 0 else draw.rectangle)(_sorted_box(lens), fill=255)
        poly([(-0.01, 0.065), (0.01, 0.065), (0.01, 0.072), (-0.01, 0.072)])


def _sorted_box(pts):
    """PIL wants x0 <= x1; mirrored figures flip them."""
    (a, b), (c, d) = pts
    return [min(a, c), min(b, d), max(a, c), max(b, d)]


def _paint(img: Image.Image, category, variant, look, P, box_px, rng, noise, shade_jitter=True):
    """Draw one item; returns its tight pixel bbox (l, t, r, b) or None."""
    mask = Image.new("L", img.size, 0)
    _shape(ImageDraw.Draw(mask), category, variant["shape"], P)
    bbox = mask.getbbox()
    if bbox is None:
        return None
    jitter = rng.normal(0.0, 40.0 * noise, 3) if shade_jitter else 0.0
    tex = _texture(look, variant["shade"], box_px, bbox, jitter)
    img.paste(Image.fromarray(tex), bbox[:2], mask.crop(bbox))
    return bbox


def _figure_mapper(cx, y0, height, mirror):
    return lambda u, v: (cx + (-u if mirror else u) * height, y0 + v * height)


def _background(img: Image.Image, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(img)
    size = img.size[0]
    for _ in range(int(rng.integers(8, 16))):
        x, y = rng.uniform(-0.1, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        colour = tuple(int(c) for c in _colour(rng))
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        else:
            draw.line([x, y, x + w, y + h], fill=colour, width=int(rng.integers(2, 6)))


def _scene(rng, size, looks, catalog, noise):
    img = Image.new("RGB", (size, size), tuple(int(c) for c in _colour(rng) * 0.5 + 100))
    _background(img, rng)
    height = size * rng.uniform(0.82, 0.95)
    y0 = rng.uniform(0.01, 0.99 * size - height)
    cx = size * rng.uniform(0.38, 0.62)
    mirror = bool(rng.integers(2))
    P = _figure_mapper(cx, y0, height, mirror)
    draw = ImageDraw.Draw(img)
    skin = tuple(int(c) for c in np.clip(np.array(SKIN[rng.integers(len(SKIN))]) + rng.normal(0, 8, 3), 0, 255))
    draw.ellipse(_sorted_box([P(-0.065, 0.02), P(0.065, 0.15)]), fill=skin)  # head
    draw.rectangle(_sorted_box([P(-0.025, 0.13), P(0.025, 0.18)]), fill=skin)  # neck
    for s in (-1, 1):  # arms, covered by long sleeves
        draw.polygon([P(s * 0.14, 0.18), P(s * 0.2, 0.19), P(s * 0.21, 0.47), P(s * 0.16, 0.47)], fill=skin)
    items = []
    for category in ("pants", "shoes", "tops", "handbags", "sunglasses"):
        if rng.uniform() < OMIT_PROB.get(category, 0.0):
            continue
        variants = catalog[category]
        variant = variants[rng.integers(len(variants))]
        u0, v0, u1, v1 = EXTENT[category]
        box_px = _sorted_box([P(u0, v0), P(u1, v1)])
        bbox = _paint(img, category, variant, looks[category], P, box_px, rng, noise)
        if bbox is not None:
            items.append((variant["sig"], [round(c / size, 6) for c in bbox]))
    if noise > 0:
        pixels = np.asarray(img, np.float32) + rng.normal(0.0, 20.0 * noise, (size, size, 3))
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return img, items


def _product(rng, size, category, look, variant):
    img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.uniform(232, 250, 3)))
    u0, v0, u1, v1 = EXTENT[category]
    height = 0.85 * size / max(u1 - u0, v1 - v0)
    cx = size / 2 - (u0 + u1) / 2 * height
    y0 = size / 2 - (v0 + v1) / 2 * height
    P = _figure_mapper(cx, y0, height, False)
    _paint(img, category, variant, look, P, _sorted_box([P(u0, v0), P(u1, v1)]), rng, 0.0, False)
    return img


def _save_jpeg(img: Image.Image, path: str) -> None:
    atomic.atomic_write(path, lambda tmp: img.save(tmp, format="JPEG", quality=90), durable=False)  # per image: hot


def _save_json(obj, path: str) -> None:
    atomic.write_json(path, obj, indent=0)


def generate(out_dir, *, spec=None, num_scenes=600, num_styles=8, scene_size=160, product_size=96, noise=0.1,
             seed=0) -> dict[str, str]:
    """Writes the dataset under out_dir; returns {"pairs", "categories", "images_dir"} paths.
    `spec` (default: the built-in synthetic spec) gives the source label written for each category."""
    if num_scenes < 1 or num_styles < 1:
        raise ValueError(f"num_scenes ({num_scenes}) and num_styles ({num_styles}) must be >= 1")
    if scene_size < 32 or product_size < 16:
        raise ValueError(f"scene_size {scene_size} (min 32) or product_size {product_size} (min 16) too small")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise {noise} must be in [0, 1]")
    rng = np.random.default_rng(seed)
    images_dir = os.path.join(out_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    spec = spec_lib.resolve("synthetic" if spec is None else spec)
    paths = dict(spec.categories)  # category -> its source labels: the generator writes the first
    if set(paths) != set(CATEGORIES):
        raise ValueError(f"{spec.source}: generator 'synthetic' writes the categories {', '.join(CATEGORIES)}; "
                         f"the spec has {', '.join(paths)}")
    taken: set[str] = set()
    looks = [{c: _look(rng) for c in CATEGORIES} for _ in range(num_styles)]
    catalogs, categories, meta_products = [], {}, {}
    for style in range(num_styles):
        catalog = {}
        for category in CATEGORIES:
            catalog[category] = [{"sig": _signature(rng, taken), "shape": v, "shade": rng.uniform(0.8, 1.15)}
                                 for v in range(VARIANTS_PER_LOOK)]
            for v, variant in enumerate(catalog[category]):
                img = _product(rng, product_size, category, looks[style][category], variant)
                _save_jpeg(img, os.path.join(images_dir, variant["sig"] + ".jpg"))
                categories[variant["sig"]] = paths[category][0]
                meta_products[variant["sig"]] = {"style": style, "category": category, "variant": v}
        catalogs.append(catalog)
    pairs, meta_scenes = [], {}
    progbar_every = max(1, num_scenes // 10)
    for i in range(num_scenes):
        style = int(rng.integers(num_styles))
        img, items = _scene(rng, scene_size, looks[style], catalogs[style], noise)
        sig = _signature(rng, taken)
        _save_jpeg(img, os.path.join(images_dir, sig + ".jpg"))
        meta_scenes[sig] = style
        pairs.extend({"product": p, "scene": sig, "bbox": box} for p, box in items)
        if (i + 1) % progbar_every == 0:
            logging.info("synthetic: %d/%d scenes, %d pairs", i + 1, num_scenes, len(pairs))
    out = {"pairs": os.path.join(out_dir, "pairs.json"), "categories": os.path.join(out_dir, "categories.json"),
           "images_dir": images_dir}
    _save_json({"scenes": meta_scenes, "products": meta_products}, os.path.join(out_dir, "styles.json"))
    _save_json(categories, out["categories"])
    _save_json(pairs, out["pairs"])  # last: its presence means the dataset is complete
    return out
