"""The dataset builder: manifest, drop reasons, split by scene, questions, idempotence, atomicity."""

import collections
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from PIL import Image

from ctl_keras.builder import build as build_dataset
from ctl_keras.config import Config, get_config
from ctl_keras.data import crop, tfrecords

SHOES = "Apparel & Accessories|Shoes"
TOPS = "Apparel & Accessories|Clothing|Shirts & Tops"
SHOE_BOX = [0.3, 0.8, 0.7, 0.95]   # expanded top 0.75 -> crop (0, 0, 1, 0.75)
TOP_BOX = [0.2, 0.1, 0.8, 0.3]     # expanded bottom 0.35 -> crop (0, 0.35, 1, 1)
README_KEYS = {"dataset", "schema_version", "pairs_in", "pairs_kept", "pairs_dropped", "categories", "splits",
               "flags", "config"}
QUIET = dict(log=lambda message: None)


def make_stl(root, num_scenes=10):
    """10 good scenes s0..s9 (100x80): a shoes pair each, plus a tops pair on even scenes = 15 pairs;
    then 9 bad rows, one per reason below (sbad and sgone are left without any usable pair)."""
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(num_scenes):
        Image.new("RGB", (100, 80), (20 * i, 90, 160)).save(images / f"s{i}.jpg")
    for product in ("p0", "p1", "p2", "p3", "p4", "t0", "t1", "pdress", "pnocat"):
        Image.new("RGB", (32, 32), (200, 10 * len(product), 50)).save(images / f"{product}.jpg")
    (images / "sbad.jpg").write_bytes(b"\xff\xd8 truncated")
    rows = [{"scene": f"s{i}", "product": f"p{i % 5}", "bbox": SHOE_BOX} for i in range(num_scenes)]
    rows += [{"scene": f"s{i}", "product": f"t{i // 2 % 2}", "bbox": TOP_BOX} for i in range(0, num_scenes, 2)]
    rows += [
        {"scene": "s0", "product": "pmissing", "bbox": SHOE_BOX},            # missing_image (product)
        {"scene": "sbad", "product": "p0", "bbox": SHOE_BOX},                # corrupt_image
        {"scene": "sgone", "product": "p2", "bbox": SHOE_BOX},               # missing_image (scene)
        {"scene": "s1", "product": "p1", "bbox": [0.5, 0.1, 0.4, 0.2]},      # bad_box
        {"scene": "s2", "product": "pnocat", "bbox": SHOE_BOX},              # no_category
        {"scene": "s3", "product": "pdress", "bbox": SHOE_BOX},              # unknown_category
        {"scene": "s4", "product": "t1", "bbox": [0.1, 0.1, 0.9, 0.9]},      # crop_too_small
        {"scene": "s5", "product": "p0", "bbox": SHOE_BOX},                  # duplicate_pair
        {"scene": "s6"},                                                     # bad_row
    ]
    categories = {p: SHOES for p in ("p0", "p1", "p2", "p3", "p4", "pmissing")}
    categories.update(t0=TOPS, t1=TOPS, pdress="Apparel & Accessories|Clothing|Dresses")
    (root / "pairs.json").write_text(json.dumps(rows))
    (root / "cat.json").write_text(json.dumps(categories))
    return dict(pairs=root / "pairs.json", categories=root / "cat.json", images_dir=images)


def read_pairs(data_dir, manifest, split):
    files = [os.path.join(data_dir, f) for f in manifest["splits"][split]["pair_shards"]]
    return [tfrecords.parse_pair(r) for r in tf.data.TFRecordDataset(files)]


def read_products(data_dir, manifest, split):
    files = [os.path.join(data_dir, f) for f in manifest["splits"][split]["product_files"]]
    return [tfrecords.parse_product(r) for r in tf.data.TFRecordDataset(files)]


def snapshot(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory)) if os.path.isfile(os.path.join(directory, name))}


@pytest.fixture(scope="module")
def stl_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("stl")
    inputs = make_stl(root)
    config = get_config("fashion2", smoke=True)
    manifest = build_dataset.build(config, root / "out", workers=1, **inputs, **QUIET)
    return config, inputs, root / "out", manifest


def test_manifest_counts_every_drop_reason(stl_build):
    """24 rows: 15 good + one per reason; sbad and sgone end with no usable pair."""
    _, _, out, manifest = stl_build
    assert README_KEYS <= manifest.keys()
    assert manifest == json.load(open(out / "manifest.json"))
    assert manifest["pairs_dropped"] == {"bad_box": 1, "bad_row": 1, "corrupt_image": 1, "crop_too_small": 1,
                                         "duplicate_pair": 1, "missing_image": 2, "no_category": 1,
                                         "unknown_category": 1}
    assert (manifest["pairs_in"], manifest["pairs_kept"]) == (24, 15)
    assert manifest["scenes_dropped"] == {"scene_without_pairs": 2}
    # s5/p0 is listed twice with the same box: one distinct box, so no duplicate box to crop away.
    assert manifest["boxes"] == {"duplicate_boxes": 0, "pairs_with_duplicate_boxes": 0, "clipped_boxes": 0}
    assert manifest["schema_version"] == 1 and manifest["dataset"] == "fashion2"
    assert manifest["categories"] == list(get_config("fashion2").categories)
    assert manifest["config"]["dataset"] == "fashion2"


def test_split_sizes_and_files_agree_with_manifest(stl_build):
    """10 scenes split 8/1/1; every shard and product file listed exists and holds what it says."""
    _, _, out, manifest = stl_build
    assert [manifest["splits"][s]["scenes"] for s in ("train", "val", "test")] == [8, 1, 1]
    assert sum(manifest["splits"][s]["pairs"] for s in ("train", "val", "test")) == 15
    for split, info in manifest["splits"].items():
        assert len(read_pairs(out, manifest, split)) == info["pairs"]
        products = read_products(out, manifest, split)
        assert len(products) == info["products"] == sum(info["products_per_category"].values())
        counts = collections.Counter(p["category"].numpy().decode() for p in products)
        assert counts == {c: n for c, n in info["products_per_category"].items() if n}


def test_val_test_with_one_scene_skip_every_question(stl_build):
    """val/test each hold one scene: no other product of the category exists, so nothing to ask."""
    _, _, out, manifest = stl_build
    for split in ("val", "test"):
        info = manifest["splits"][split]
        assert info["questions"] == 0 and info["questions_skipped"] == info["pairs"] > 0
        assert json.load(open(out / tfrecords.questions_file_name(split))) == []


def test_pair_content_crop_and_other_boxes(stl_build):
    """Shoes pair of s0: crop (0,0,1,0.75) -> 100x60 px scene; the tops box (0.2,0.1,0.8,0.3) maps to
    (0.2, 0.1/0.75, 0.8, 0.3/0.75), pmissing's shoe box falls outside. Tops pair: crop (0,0.35,1,1); shoes box -> (0.3, 0.45/0.65, 0.7, 0.6/0.65)."""
    _, _, out, manifest = stl_build
    pairs = [p for s in ("train", "val", "test") for p in read_pairs(out, manifest, s)]
    by_key = {(p["scene_id"].numpy().decode(), p["product_id"].numpy().decode()): p for p in pairs}
    shoes, tops = by_key[("s0", "p0")], by_key[("s0", "t0")]
    assert tf.io.decode_jpeg(shoes["scene_jpeg"]).shape.as_list() == [60, 100, 3]
    assert tf.io.decode_jpeg(shoes["full_scene_jpeg"]).shape.as_list() == [80, 100, 3]
    assert tf.io.decode_jpeg(shoes["product_jpeg"]).shape.as_list() == [32, 32, 3]
    assert shoes["crop_box"].numpy().tolist() == pytest.approx([0, 0, 1, 0.75])
    assert shoes["other_boxes"].numpy().tolist() == [pytest.approx([0.2, 0.1 / 0.75, 0.8, 0.3 / 0.75])]
    assert shoes["other_categories"].numpy().tolist() == [b"tops"]
    assert tops["crop_box"].numpy().tolist() == pytest.approx([0, 0.35, 1, 1])
    # s0 also holds "pmissing" (same box as p0): its pair is dropped, but the product is in the scene.
    assert tops["other_boxes"].numpy().tolist() == [pytest.approx([0.3, 0.45 / 0.65, 0.7, 0.6 / 0.65])] * 2
    assert tops["other_categories"].numpy().tolist() == [b"shoes", b"shoes"]
    assert sorted(int(p["pair_id"]) for p in pairs) == list(range(15))


def test_val_test_shards_read_in_pair_id_order(synthetic_data, tmp_path):
    """Evaluation reads "in file order": with num_shards=16, val/test get 16 // 8 = 2 shards each, and
    reading them in order must still give increasing pair ids."""
    config, data_dir = synthetic_data
    raw = os.path.join(data_dir, "raw")
    manifest = build_dataset.build(config.replace(num_shards=16), tmp_path, pairs=os.path.join(raw, "pairs.json"),
                                   categories=os.path.join(raw, "categories.json"),
                                   images_dir=os.path.join(raw, "images"), workers=1, **QUIET)
    for split in ("val", "test"):
        assert len(manifest["splits"][split]["pair_shards"]) == 2
        ids = [int(p["pair_id"]) for p in read_pairs(tmp_path, manifest, split)]
        assert ids == sorted(ids) and len(ids) == manifest["splits"][split]["pairs"]


@pytest.mark.slow
def test_rebuild_is_byte_identical_with_a_pool_and_removes_stale_shards(stl_build, tmp_path):
    """Same inputs built again into a fresh dir with 2 workers give the same bytes; a rebuild with
    one train shard removes the two-shard files of the first build."""
    config, inputs, out, _ = stl_build
    again = tmp_path / "again"
    build_dataset.build(config, again, workers=2, **inputs, **QUIET)
    first, second = snapshot(out), snapshot(again)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    build_dataset.build(config.replace(num_shards=1), again, workers=1, **inputs, **QUIET)
    assert [n for n in os.listdir(again) if n.startswith("pairs-train")] == ["pairs-train-00000-of-00001.tfrecord"]


def test_rebuild_in_place_same_bytes(stl_build):
    config, inputs, out, _ = stl_build
    before = snapshot(out)
    build_dataset.build(config, out, workers=1, **inputs, **QUIET)
    assert snapshot(out) == before


def test_failed_rebuild_keeps_the_old_dataset_and_a_failed_first_build_leaves_nothing(stl_build, tmp_path,
                                                                                      monkeypatch):
    """a rebuild that dies leaves the previous complete dataset as it was (it used to
    delete it); a first build that dies leaves no manifest and no shard; the rerun completes it."""
    config, inputs, out, _ = stl_build
    target = tmp_path / "out"
    build_dataset.build(config, target, workers=1, **inputs, **QUIET)
    before = snapshot(target)

    def explode(path):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(crop, "product_jpeg", explode)
    with pytest.raises(RuntimeError, match="killed"):
        build_dataset.build(config, target, workers=1, **inputs, **QUIET)
    assert snapshot(target) == before and sorted(os.listdir(target)) == sorted(before)  # no staging left
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="killed"):
        build_dataset.build(config, fresh, workers=1, **inputs, **QUIET)
    assert not fresh.exists()
    monkeypatch.undo()
    build_dataset.build(config, fresh, workers=1, **inputs, **QUIET)
    assert snapshot(fresh) == snapshot(out)


def test_whole_input_errors_write_nothing(tmp_path):
    inputs = make_stl(tmp_path / "in", num_scenes=2)
    config = get_config("fashion2", smoke=True)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="split 'val' is empty"):
        build_dataset.build(config, out, workers=1, **inputs, **QUIET)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        build_dataset.build(config, out, workers=1, **{**inputs, "pairs": tmp_path / "missing.json"}, **QUIET)
    with pytest.raises(ValueError, match="--categories"):
        build_dataset.build(config, out, workers=1, **{**inputs, "categories": None}, **QUIET)
    with pytest.raises(ValueError, match="--street2shop_dir"):
        build_dataset.build(get_config("fashion1", smoke=True), out, workers=1, **QUIET)
    assert not out.exists()


@pytest.mark.slow
def test_cli_error_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=home", f"--out={tmp_path / 'o'}",
         f"--pairs={tmp_path / 'nope.json'}", f"--categories={tmp_path / 'c.json'}", f"--images_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "build_dataset: error: pairs file not found:" in result.stderr and "nope.json" in result.stderr


def test_synthetic_splits_are_disjoint_by_scene(synthetic_data):
    config, data_dir = synthetic_data
    manifest = json.load(open(os.path.join(data_dir, "manifest.json")))
    scenes = {}
    for split in ("train", "val", "test"):
        pairs = read_pairs(data_dir, manifest, split)
        scenes[split] = {p["scene_id"].numpy() for p in pairs}
        assert len(scenes[split]) == manifest["splits"][split]["scenes"] > 0
    assert not scenes["train"] & scenes["val"] and not scenes["train"] & scenes["test"]
    assert not scenes["val"] & scenes["test"]
    assert Config.from_dict(manifest["config"]) == config


def test_synthetic_question_negatives_share_category_and_differ(synthetic_data):
    _, data_dir = synthetic_data
    manifest = json.load(open(os.path.join(data_dir, "manifest.json")))
    for split in ("val", "test"):
        category_of = {p["product_id"].numpy().decode(): p["category"].numpy().decode()
                       for p in read_products(data_dir, manifest, split)}
        pair_products = collections.defaultdict(set)
        for p in read_pairs(data_dir, manifest, split):
            pair_products[p["scene_id"].numpy().decode()].add(p["product_id"].numpy().decode())
        questions = json.load(open(os.path.join(data_dir, tfrecords.questions_file_name(split))))
        assert len(questions) == manifest["splits"][split]["questions"] > 0
        for q in questions:
            assert q["negative"] != q["positive"]
            assert category_of[q["negative"]] == category_of[q["positive"]] == q["category"]
            assert q["negative"] not in pair_products[q["scene_id"]]
