"""tf.data pipeline on a small hand-made dataset directory (records written with tfrecords.encode_*).

Hand-made train split (categories of the synthetic dataset):
  tops (0): products t0, t1, t2; pants (1): p0, p1; shoes (2): s0 only.
  pairs 0..11: pair i has product tops[i % 3] for i < 6, pants[i % 2] for 6 <= i < 10, s0 for 10, 11.
  -> shoes has one product, so pairs 10 and 11 cannot form triplets: 10 triplets per epoch.
val: pairs 100..102, test: pairs 200, 201.
"""

import io
import json
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctl_keras.config import get_config
from ctl_keras.data import dataset_dir, pipeline, tfrecords

CONFIG = get_config("synthetic", smoke=True)  # image_size 64, resize_size 72, categories tops, pants, shoes...
TRAIN_PRODUCTS = {"tops": ["t0", "t1", "t2"], "pants": ["p0", "p1"], "shoes": ["s0"]}
CATEGORY_OF = {p: c for c, ps in TRAIN_PRODUCTS.items() for p in ps}


def _jpeg(seed: int, h: int, w: int) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _pair(pair_id: int, product: str, category: str, scene: str | None = None) -> bytes:
    return tfrecords.encode_pair(
        pair_id=pair_id, scene_id=scene or f"s{pair_id}", product_id=product, category=category,
        category_index=CONFIG.categories.index(category), scene_jpeg=_jpeg(pair_id, 80, 96),
        full_scene_jpeg=_jpeg(1000 + pair_id, 120, 96), product_jpeg=_jpeg(zlib.crc32(product.encode()), 70, 70),
        product_box=[0.1, 0.6, 0.5, 0.9], crop_box=[0.0, 0.0, 1.0, 0.5])


def _write_dataset(root, manifest_overrides=None, train=None):
    """Train pairs are (pair_id, product, category[, scene]); the scene defaults to s<pair_id>."""
    root.mkdir(parents=True, exist_ok=True)
    if train is None:
        train = [(i, TRAIN_PRODUCTS["tops"][i % 3], "tops") for i in range(6)]
        train += [(i, TRAIN_PRODUCTS["pants"][i % 2], "pants") for i in range(6, 10)]
        train += [(i, "s0", "shoes") for i in (10, 11)]
    splits = {"train": train, "val": [(100, "v0", "tops"), (101, "v1", "tops"), (102, "v2", "pants")],
              "test": [(200, "x0", "pants"), (201, "x1", "pants")]}
    info = {}
    for split, pairs in splits.items():
        n = 2 if split == "train" else 1
        shards = [tfrecords.pair_shard_name(split, i, n) for i in range(n)]
        for i, name in enumerate(shards):
            tfrecords.write_records(root / name, [_pair(*p) for p in pairs[i::n]])
        products = {}
        for _, product, category, *_ in pairs:
            products.setdefault(category, {})[product] = None  # ordered, each product once
        for category, ids in products.items():
            c = CONFIG.categories.index(category)
            tfrecords.write_records(root / tfrecords.product_file_name(split, c), [
                tfrecords.encode_product(product_id=p, category=category, category_index=c,
                                         product_jpeg=_jpeg(zlib.crc32(p.encode()), 70, 70)) for p in ids])
        info[split] = {"scenes": len(pairs), "products": sum(map(len, products.values())),
                       "pairs": len(pairs), "pair_shards": shards,
                       "products_per_category": {c: len(v) for c, v in products.items()}}
    (root / "questions-val.json").write_text(json.dumps([{"question_id": 0, "pair_id": 100, "scene_id": "s100",
                                                          "category": "tops", "positive": "v0", "negative": "v1"}]))
    manifest = {"dataset": "synthetic", "schema_version": 1, "categories": list(CONFIG.categories), "splits": info}
    manifest.update(manifest_overrides or {})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("ctl"))


def _epoch(data_dir, epoch, **kw):
    return list(pipeline.make_dataset(CONFIG, "train", data_dir, epoch_index=epoch, **kw).as_numpy_iterator())


# ---------------------------------------------------------------- errors
def test_missing_manifest_names_dir_and_build_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no manifest.json in .*--dataset=synthetic --out="):
        pipeline.make_dataset(CONFIG, "train", tmp_path)


def test_bad_manifest_split_and_categories(tmp_path, data_dir):
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        pipeline.make_dataset(CONFIG, "dev", data_dir)
    with pytest.raises(ValueError, match="schema_version 2"):
        dataset_dir.read_manifest(_write_dataset(tmp_path / "v2", {"schema_version": 2}))
    empty = {"splits": {"train": {"pairs": 1}, "val": {"pairs": 0}, "test": {"pairs": 1}}}
    with pytest.raises(ValueError, match="split 'val' has zero pairs"):
        pipeline.make_dataset(CONFIG, "val", _write_dataset(tmp_path / "e", empty))
    with pytest.raises(ValueError, match="categories"):
        pipeline.make_dataset(get_config("fashion2", smoke=True), "val", data_dir)
    with pytest.raises(ValueError, match="no questions"):
        dataset_dir.load_questions(data_dir, "train")


def test_older_manifest_is_refused_with_the_rebuild_command(tmp_path):
    """A manifest of this schema without the per-split file lists (an earlier build) is not guessed at."""
    root = _write_dataset(tmp_path / "old")
    manifest = json.loads((root / "manifest.json").read_text())
    for info in manifest["splits"].values():
        del info["products_per_category"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"no products_per_category for split 'train' .*rebuild with "
                                         r"`ctl build --dataset=synthetic --out="):
        pipeline.make_dataset(CONFIG, "train", root)
    del manifest["splits"]["val"]["pair_shards"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"no pair_shards for split 'val'"):
        pipeline.make_dataset(CONFIG, "val", root)


# ---------------------------------------------------------------- train
def test_train_triplet_shapes_dtypes_and_count(data_dir):
    """12 train pairs minus the 2 shoes pairs (one shoes product, no possible negative) = 10."""
    items = _epoch(data_dir, 0)
    assert len(items) == 10 and sorted(int(t["pair_id"]) for t in items) == list(range(10))
    for t in items:
        for key in ("scene", "positive", "negative"):
            assert t[key].shape == (64, 64, 3) and t[key].dtype == np.float32
            assert 0.0 <= t[key].min() and t[key].max() <= 255.0
        assert t["category"].dtype == np.int32 and t["pair_id"].dtype == np.int64
    batch = next(iter(pipeline.make_dataset(CONFIG, "train", data_dir, batch_size=4)))
    assert batch["scene"].shape == (4, 64, 64, 3) and batch["negative_id"].shape == (4,)


def test_train_is_deterministic_per_epoch_and_changes_across_epochs(data_dir):
    a, b, c = _epoch(data_dir, 3), _epoch(data_dir, 3), _epoch(data_dir, 4)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    by_id_a = {int(t["pair_id"]): t for t in a}
    by_id_c = {int(t["pair_id"]): t for t in c}
    assert [t["pair_id"] for t in a] != [t["pair_id"] for t in c]
    # The same pair gets a different scene crop in another epoch.
    assert all(not np.array_equal(by_id_a[i]["scene"], by_id_c[i]["scene"]) for i in by_id_a)


@pytest.mark.slow
def test_negatives_same_category_never_positive_and_redrawn_over_30_epochs(data_dir):
    """Over 30 epochs every negative is another product of the positive's category, no triplet is
    dropped (10 per epoch), and each tops pair sees both other tops products (its 2 possible
    negatives) at some epoch. raw_triplets is make_dataset's train stream before decoding."""
    seen = {}
    for epoch in range(30):
        items = list(pipeline.raw_triplets(CONFIG, data_dir, epoch_index=epoch).as_numpy_iterator())
        assert len(items) == 10
        for t in items:
            pos, neg = t["positive_id"].decode(), t["negative_id"].decode()
            assert neg != pos and CATEGORY_OF[neg] == CATEGORY_OF[pos]
            assert CONFIG.categories[t["category"]] == CATEGORY_OF[pos]
            seen.setdefault(int(t["pair_id"]), set()).add(neg)
    for pair_id in range(6):
        assert seen[pair_id] == set(TRAIN_PRODUCTS["tops"]) - {TRAIN_PRODUCTS["tops"][pair_id % 3]}


@pytest.mark.slow
def test_no_training_negative_is_a_product_of_the_same_scene(tmp_path):
    """Scene A holds tops t0, t1 and pants p0; scene E holds both shoes. Pairs 0, 1 (scene A) may only
    draw t2 or t3; the shoes pairs have no product outside their scene and are skipped (8 - 2 = 6
    triplets); over 20 epochs no negative is a product of its scene, and every valid one appears."""
    train = [(0, "t0", "tops", "A"), (1, "t1", "tops", "A"), (2, "t2", "tops", "B"), (3, "t3", "tops", "C"),
             (4, "p0", "pants", "A"), (5, "p1", "pants", "D"), (6, "s0", "shoes", "E"), (7, "s1", "shoes", "E")]
    data_dir = _write_dataset(tmp_path / "scenes", train=train)
    scene_products = {"A": {"t0", "t1", "p0"}, "B": {"t2"}, "C": {"t3"}, "D": {"p1"}, "E": {"s0", "s1"}}
    scene_of = {pair_id: scene for pair_id, _, _, scene in train}
    seen = {}
    for epoch in range(20):
        items = list(pipeline.raw_triplets(CONFIG, data_dir, epoch_index=epoch).as_numpy_iterator())
        assert sorted(int(t["pair_id"]) for t in items) == [0, 1, 2, 3, 4, 5]
        for t in items:
            neg, pair_id = t["negative_id"].decode(), int(t["pair_id"])
            assert neg not in scene_products[scene_of[pair_id]]
            assert CONFIG.categories[t["category"]] == ("tops" if pair_id < 4 else "pants")
            seen.setdefault(pair_id, set()).add(neg)
    assert seen[0] == seen[1] == {"t2", "t3"} and seen[2] == {"t0", "t1", "t3"}
    assert seen[4] == {"p1"} and seen[5] == {"p0"}


def test_raw_triplets_match_make_dataset(data_dir):
    """Same order and negatives; the decoded positive's view comes from the same bytes."""
    raw = list(pipeline.raw_triplets(CONFIG, data_dir, epoch_index=2).as_numpy_iterator())
    full = _epoch(data_dir, 2)
    assert [(t["pair_id"], t["negative_id"]) for t in raw] == [(t["pair_id"], t["negative_id"]) for t in full]
    assert set(raw[0]) == {"scene_jpeg", "positive_jpeg", "negative_jpeg", "category", "pair_id",
                           "positive_id", "negative_id"}


def test_full_scene_train_variant_reads_the_uncropped_scene(data_dir):
    cropped = {int(t["pair_id"]): t for t in _epoch(data_dir, 0)}
    full = {int(t["pair_id"]): t for t in _epoch(data_dir, 0, full_scene=True)}
    assert all(not np.array_equal(cropped[i]["scene"], full[i]["scene"]) for i in cropped)
    # Only the scene changes: the positive view and the negative are the same.
    assert all(np.array_equal(cropped[i]["positive"], full[i]["positive"]) for i in cropped)


# ---------------------------------------------------------------- eval
def test_eval_order_stable_and_center_view(data_dir):
    items = list(pipeline.make_dataset(CONFIG, "val", data_dir).as_numpy_iterator())
    again = list(pipeline.make_dataset(CONFIG, "val", data_dir).as_numpy_iterator())
    assert [int(t["pair_id"]) for t in items] == [100, 101, 102]
    assert set(items[0]) == {"scene", "positive", "category", "pair_id", "scene_id", "positive_id"}
    assert [t["positive_id"] for t in items] == [b"v0", b"v1", b"v2"] and items[2]["category"] == 1
    for x, y in zip(items, again):
        np.testing.assert_array_equal(x["scene"], y["scene"])
    expected = pipeline.eval_view(pipeline.decode_image(tf.constant(_jpeg(100, 80, 96))), CONFIG).numpy()
    np.testing.assert_allclose(items[0]["scene"], expected, atol=1e-4)
    full = list(pipeline.make_dataset(CONFIG, "val", data_dir, full_scene=True).as_numpy_iterator())
    assert not np.array_equal(full[0]["scene"], items[0]["scene"])
    batches = list(pipeline.make_dataset(CONFIG, "test", data_dir, batch_size=3))
    assert [b["scene"].shape[0] for b in batches] == [2]


def test_product_dataset_yields_each_product_once(data_dir):
    items = list(pipeline.make_product_dataset(CONFIG, "train", data_dir).as_numpy_iterator())
    assert sorted(t["product_id"].decode() for t in items) == sorted(CATEGORY_OF)
    assert all(CONFIG.categories[t["category"]] == CATEGORY_OF[t["product_id"].decode()] for t in items)
    assert items[0]["image"].shape == (64, 64, 3) and items[0]["image"].dtype == np.float32


def test_raw_readers_and_questions(data_dir):
    pairs = list(pipeline.raw_pairs(data_dir, "test").as_numpy_iterator())
    assert [int(p["pair_id"]) for p in pairs] == [200, 201] and pairs[0]["other_boxes"].shape == (0, 4)
    products = list(pipeline.raw_products(data_dir, "val").as_numpy_iterator())
    assert [p["product_id"] for p in products] == [b"v0", b"v1", b"v2"]
    assert dataset_dir.load_questions(data_dir, "val")[0]["negative"] == "v1"


# ---------------------------------------------------------------- on the built synthetic dataset
def test_synthetic_train_epoch_negatives_and_batches(synthetic_data):
    """One epoch of the built dataset: one triplet per train pair whose category has >= 2 products,
    each negative from the positive's category; batches have the config's shapes."""
    config, data_dir = synthetic_data
    manifest = dataset_dir.read_manifest(data_dir)
    counts = manifest["splits"]["train"]["products_per_category"]
    category = {p["product_id"]: int(p["category_index"])
                for p in pipeline.raw_products(data_dir, "train").as_numpy_iterator()}
    usable = [int(p["pair_id"]) for p in pipeline.raw_pairs(data_dir, "train").as_numpy_iterator()
              if counts[config.categories[p["category_index"]]] >= 2]
    triplets = list(pipeline.raw_triplets(config, data_dir, epoch_index=1).as_numpy_iterator())
    assert sorted(int(t["pair_id"]) for t in triplets) == sorted(usable)
    for t in triplets:
        assert t["negative_id"] != t["positive_id"]
        assert category[t["negative_id"]] == category[t["positive_id"]] == t["category"]
    batch = next(iter(pipeline.make_dataset(config, "train", data_dir, epoch_index=1, batch_size=config.batch_size)))
    assert batch["scene"].shape == (config.batch_size, config.image_size, config.image_size, 3)


def test_synthetic_eval_products_and_questions(synthetic_data):
    config, data_dir = synthetic_data
    manifest = dataset_dir.read_manifest(data_dir)
    val = list(pipeline.make_dataset(config, "val", data_dir, batch_size=64).as_numpy_iterator())
    pair_ids = [int(i) for b in val for i in b["pair_id"]]
    assert len(pair_ids) == manifest["splits"]["val"]["pairs"] and pair_ids == sorted(pair_ids)
    products = [p for b in pipeline.make_product_dataset(config, "val", data_dir, batch_size=64).as_numpy_iterator()
                for p in b["product_id"]]
    assert len(products) == len(set(products)) == manifest["splits"]["val"]["products"]
    questions = dataset_dir.load_questions(data_dir, "val")
    assert len(questions) == manifest["splits"]["val"]["questions"]
    assert {q["pair_id"] for q in questions} <= set(pair_ids)
