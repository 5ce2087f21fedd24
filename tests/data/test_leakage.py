"""Leakage counting: dHash near-duplicates (real imagehash on real JPEGs), groups, the manifest counts,
and `build_dataset --dedupe_scenes` on a synthetic set with one repinned scene."""

import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ctl_keras.data import leakage


def _jpeg(array, quality=90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3))
    return np.kron(small, np.ones((16, 16, 1)))  # 128 px blocks: structure dHash sees


def test_repinned_scene_is_a_near_duplicate_and_another_is_not():
    base = _scene(0)
    repin = _jpeg(np.clip(base * 0.97 + 4, 0, 255), quality=60)  # re-encoded, slightly re-toned
    hashes = {"a": leakage.dhash(_jpeg(base)), "b": leakage.dhash(repin), "c": leakage.dhash(_jpeg(_scene(1)))}
    assert bin(hashes["a"] ^ hashes["b"]).count("1") <= leakage.NEAR_DUPLICATE_BITS
    assert bin(hashes["a"] ^ hashes["c"]).count("1") > 16
    assert leakage.near_duplicate_pairs(hashes) == [("a", "b")]
    assert leakage.duplicate_scenes(hashes) == {"b": "a"}


def test_band_search_equals_all_pairs():
    """The pigeonhole band buckets find exactly the pairs an all-pairs scan finds."""
    rng = np.random.default_rng(3)
    base = [int(x) for x in rng.integers(0, 2**63, 40, dtype=np.int64)]
    hashes = {f"s{i:02d}": v for i, v in enumerate(base)}
    for i in range(15):  # near copies with 0..6 flipped bits
        flips = rng.choice(64, size=i % 7, replace=False)
        hashes[f"t{i:02d}"] = base[i] ^ sum(1 << int(f) for f in flips)
    names = sorted(hashes)
    brute = sorted((a, b) for i, a in enumerate(names) for b in names[i + 1:]
                   if bin(hashes[a] ^ hashes[b]).count("1") <= 4)
    assert leakage.near_duplicate_pairs(hashes, 4) == brute and len(brute) >= 9
    groups = leakage.duplicate_scenes(hashes, 4)
    assert all(kept < dropped for dropped, kept in groups.items())


def test_count_leakage_counts_products_and_scenes():
    pairs = {"train": [{"scene_id": "s1", "product_id": "p1"}, {"scene_id": "s2", "product_id": "p2"}],
             "val": [{"scene_id": "s3", "product_id": "p9"}],
             "test": [{"scene_id": "s4", "product_id": "p1"}, {"scene_id": "s4", "product_id": "p3"},
                      {"scene_id": "s5", "product_id": "p1"}]}
    hashes = {"s1": 0, "s2": 2**40 - 1, "s3": 2**63 + 2**20 - 1, "s4": 0b111, "s5": 2**64 - 1}
    out = leakage.count_leakage(pairs, hashes)
    assert out["test"] == {"pairs": 3, "positives_in_train": 2, "products": 2, "products_in_train": 1,
                           "scenes": 2, "scenes_near_duplicate_of_train": 1}  # s4 is 3 bits from s1
    assert out["val"]["positives_in_train"] == 0 and out["val"]["scenes_near_duplicate_of_train"] == 0
    with pytest.raises(ValueError, match="max_bits"):
        leakage.near_duplicate_pairs(hashes, 64)


@pytest.mark.slow
def test_build_counts_leakage_and_dedupe_drops_the_repin(tmp_path):
    """A synthetic set plus one repinned scene (a re-encoded copy under a new id, same products)."""
    from ctl_keras.builder import build as build_dataset
    from ctl_keras import config as config_lib
    from ctl_keras.data import synthetic

    raw = synthetic.generate(str(tmp_path / "raw"), num_scenes=48, scene_size=96, product_size=64, seed=0)
    pairs = json.load(open(raw["pairs"]))
    original = pairs[0]["scene"]
    with Image.open(os.path.join(raw["images_dir"], original + ".jpg")) as image:
        image.convert("RGB").save(os.path.join(raw["images_dir"], "repin.jpg"), quality=70)
    pairs += [{**p, "scene": "repin"} for p in pairs if p["scene"] == original]
    with open(raw["pairs"], "w") as f:
        json.dump(pairs, f)
    config = config_lib.get_config("synthetic", smoke=True)
    kwargs = {"pairs": raw["pairs"], "categories": raw["categories"], "images_dir": raw["images_dir"],
              "workers": 1, "log": lambda line: None}
    plain = build_dataset.build(config, str(tmp_path / "plain"), **kwargs)
    leak = plain["leakage"]
    assert leak["test"]["pairs"] == plain["splits"]["test"]["pairs"]
    assert 0 <= leak["test"]["positives_in_train"] <= leak["test"]["pairs"]
    assert "near_duplicate" not in plain["scenes_dropped"]
    deduped = build_dataset.build(config, str(tmp_path / "dedupe"), dedupe_scenes=True, **kwargs)
    assert deduped["scenes_dropped"]["near_duplicate"] == 1 and deduped["flags"]["dedupe_scenes"] is True
    scenes = sum(deduped["splits"][s]["scenes"] for s in ("train", "val", "test"))
    assert scenes == sum(plain["splits"][s]["scenes"] for s in ("train", "val", "test")) - 1
    for split in ("val", "test"):
        assert deduped["leakage"][split]["scenes_near_duplicate_of_train"] == 0
    shutil.rmtree(tmp_path / "raw")
