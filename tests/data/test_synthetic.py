"""Synthetic dataset: STL format, determinism, style structure, and "learnable but not similar"."""

import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ctl_keras import spec as spec_lib
from ctl_keras.data import synthetic
from ctl_keras.data.crop import ctl_crop

SMALL = dict(num_scenes=16, num_styles=3, scene_size=64, product_size=32, noise=0.1)


def _load(out):
    with open(out["pairs"]) as f:
        pairs = json.load(f)
    with open(out["categories"]) as f:
        cats = json.load(f)
    with open(os.path.join(os.path.dirname(out["pairs"]), "styles.json")) as f:
        styles = json.load(f)
    return pairs, cats, styles


def _tree_bytes(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return synthetic.generate(str(tmp_path_factory.mktemp("syn")), seed=3, **SMALL)


def test_format_is_stl(small):
    pairs, cats, styles = _load(small)
    paths = {labels[0] for _, labels in spec_lib.resolve("synthetic").categories}
    assert pairs and set(pairs[0]) == {"product", "scene", "bbox"}
    assert set(cats.values()) == paths  # every synthetic category occurs, with the real STL paths
    scenes = {p["scene"] for p in pairs}
    assert len(scenes) == SMALL["num_scenes"]
    assert not scenes & set(cats)  # a signature is either a scene or a product
    for p in pairs:
        assert p["product"] in cats
        assert re.fullmatch(r"[0-9a-f]{32}", p["scene"]) and re.fullmatch(r"[0-9a-f]{32}", p["product"])
        left, top, right, bottom = p["bbox"]
        assert 0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0, p
    for sig in scenes | set(cats):
        with Image.open(os.path.join(small["images_dir"], sig + ".jpg")) as im:
            im.load()
            size = SMALL["scene_size"] if sig in scenes else SMALL["product_size"]
            assert im.size == (size, size) and im.mode == "RGB"
    # Nothing but finished files: no temporaries left behind.
    assert not [n for n in os.listdir(small["images_dir"]) if not n.endswith(".jpg")]


def test_same_seed_same_bytes_other_seed_differs(tmp_path, small):
    again = synthetic.generate(str(tmp_path / "a"), seed=3, **SMALL)
    other = synthetic.generate(str(tmp_path / "b"), seed=4, **SMALL)
    root = os.path.dirname(small["pairs"])
    assert _tree_bytes(os.path.dirname(again["pairs"])) == _tree_bytes(root)
    with open(other["pairs"], "rb") as f, open(small["pairs"], "rb") as g:
        assert f.read() != g.read()


def test_style_structure(small):
    pairs, cats, styles = _load(small)
    per_scene = collections.defaultdict(list)
    for p in pairs:
        meta = styles["products"][p["product"]]
        # A scene's items all come from the scene's own style ...
        assert meta["style"] == styles["scenes"][p["scene"]]
        assert cats[p["product"]] == dict(spec_lib.resolve("synthetic").categories)[meta["category"]][0]
        per_scene[p["scene"]].append(meta["category"])
    for categories in per_scene.values():
        # ... one item per category; tops, pants and shoes are always worn.
        assert len(categories) == len(set(categories))
        assert {"tops", "pants", "shoes"} <= set(categories)
    # Catalog: styles x categories x variants products, 3 * 5 * 5 = 75 here.
    assert len(styles["products"]) == SMALL["num_styles"] * len(synthetic.CATEGORIES) * synthetic.VARIANTS_PER_LOOK


def test_products_recur_and_crop_keeps_pairs(small):
    pairs, _, _ = _load(small)
    uses = collections.Counter(p["product"] for p in pairs)
    assert max(uses.values()) >= 2
    kept = sum(ctl_crop(p["bbox"], ("top", "bottom"))[0] is not None for p in pairs)
    assert kept >= 0.9 * len(pairs)


def _colour_set(image):
    """Which of 8x8x8 colour bins hold >= 6 pixels: a what-colours-are-there feature, blind to area."""
    a = (np.asarray(image.convert("RGB").resize((48, 48)), np.int64) // 32).reshape(-1, 3)
    counts = np.bincount(a[:, 0] * 64 + a[:, 1] * 8 + a[:, 2], minlength=512)
    h = (counts >= 6).astype(np.float64)
    return h / max(np.linalg.norm(h), 1e-9)


def test_compatibility_learnable_but_not_visual_similarity(tmp_path):
    """Raw scene-vs-product similarity ranks p+ over a same-category p- at chance (AUC ~0.5), while a
    1-NN over training scenes of the same product, on the same raw feature, ranks it well: the link
    goes through the style, not through looks."""
    out = synthetic.generate(str(tmp_path), num_scenes=150, num_styles=4, scene_size=96, product_size=48,
                             noise=0.1, seed=0)
    pairs, _, styles = _load(out)
    images = lambda sig: Image.open(os.path.join(out["images_dir"], sig + ".jpg"))
    crops = []
    for p in pairs:
        box, _ = ctl_crop(p["bbox"], ("top", "bottom"))
        crops.append(None if box is None else _colour_set(
            images(p["scene"]).crop(tuple(int(round(c * 96)) for c in box))))
    product_feat = {sig: _colour_set(images(sig)) for sig in styles["products"]}
    by_category = collections.defaultdict(list)
    for sig, meta in styles["products"].items():
        by_category[meta["category"]].append(sig)
    scenes = sorted({p["scene"] for p in pairs})
    train_scenes = set(scenes[: len(scenes) * 7 // 10])
    train_by_product = collections.defaultdict(list)
    for i, p in enumerate(pairs):
        if p["scene"] in train_scenes and crops[i] is not None:
            train_by_product[p["product"]].append(crops[i])
    rng = np.random.default_rng(0)
    raw, learned = [], []
    for i, p in enumerate(pairs):
        if p["scene"] in train_scenes or crops[i] is None:
            continue
        candidates = [s for s in by_category[styles["products"][p["product"]]["category"]] if s != p["product"]]
        neg = candidates[rng.integers(len(candidates))]
        raw.append(np.sign(crops[i] @ product_feat[p["product"]] - crops[i] @ product_feat[neg]))
        knn = lambda sig: max((crops[i] @ f for f in train_by_product[sig]), default=0.0)
        learned.append(np.sign(knn(p["product"]) - knn(neg)))
    auc = lambda signs: 0.5 + 0.5 * float(np.mean(signs))
    assert len(raw) >= 100
    assert 0.35 <= auc(raw) <= 0.65, auc(raw)
    assert auc(learned) >= 0.75, auc(learned)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_scenes"):
        synthetic.generate(str(tmp_path), num_scenes=0)
    with pytest.raises(ValueError, match="noise"):
        synthetic.generate(str(tmp_path), noise=2.0)


def test_cli(tmp_path):
    cmd = [sys.executable, "-m", "ctl_keras.cli.synthetic", f"--out={tmp_path}", "--num_scenes=2",
           "--num_styles=1", "--scene_size=48", "--product_size=24", "--seed=1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["pairs"] == str(tmp_path / "pairs.json")
    bad = subprocess.run(cmd[:4] + ["--noise=5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "noise" in bad.stderr and "Traceback" not in bad.stderr
