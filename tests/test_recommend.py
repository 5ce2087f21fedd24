"""recommend index/query and the recommender SavedModel on the smoke synthetic catalog, with the
parity check of docs/design.md §3: index ranking == ranking by the training graph's d*."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.retrieval import bundle
from ctl_keras.retrieval import jobs as recommend
from ctl_keras.data.pipeline import decode_image, eval_view, raw_pairs, raw_products
from ctl_keras.retrieval.index import CatalogIndex, load_index, save_index
from ctl_keras.retrieval.search import open_backend

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ctl_keras.recommend", *args], capture_output=True, text=True, env=ENV)


@pytest.fixture(scope="module")
def setup(synthetic_data, untrained_model, tmp_path_factory):
    """model_dir of an untrained smoke model -> export v1 -> CLI index of the test split's products."""
    config, data_dir = synthetic_data
    tmp = tmp_path_factory.mktemp("recommend")
    export_dir = str(tmp / "export")
    _, models, model_dir = untrained_model
    bundle.export_towers(str(model_dir), export_dir)
    proc = _cli("index", f"--export_dir={export_dir}", f"--products={data_dir}:test", f"--index={tmp / 'catalog'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pairs = {}
    for p in raw_pairs(data_dir, "test"):
        key = (p["scene_id"].numpy().decode(), p["category"].numpy().decode())
        pairs.setdefault(key, p["scene_jpeg"].numpy())
    scene_path = tmp / "scene.jpg"
    first = next(iter(pairs))
    scene_path.write_bytes(pairs[first])
    return config, data_dir, models, str(model_dir), export_dir, str(tmp / "catalog"), pairs, str(scene_path), first[1]


@pytest.mark.slow
def test_index_holds_every_test_product_once(setup):
    config, data_dir, *_, index_path, _, _, _ = setup
    index = load_index(index_path)
    products = {p["product_id"].numpy().decode(): p["category"].numpy().decode()
                for p in raw_products(data_dir, "test")}
    assert sorted(index.product_ids) == sorted(products)
    assert all(index.categories[c] == products[p] for p, c in zip(index.product_ids, index.category_ids))
    assert index.meta["tower_version"] == 1 and index.embedding_dim == config.embedding_dim
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_index_ranking_equals_training_graph_d_star(setup):
    """For every (test scene, category): ids ranked by the served q·f_p == ids ranked by triplet_model's
    d*(s, p) over all products of that category, and d* = 2 - q·f_p within 1e-5."""
    config, data_dir, models, _, export_dir, index_path, pairs, *_ = setup
    index = load_index(index_path)
    tower = tf.saved_model.load(os.path.join(export_dir, "scene_tower", "1")).signatures["serving_default"]
    triplet = models.triplet_model(from_features=False)
    images = {}
    for p in raw_products(data_dir, "test"):
        images[p["product_id"].numpy().decode()] = eval_view(decode_image(p["product_jpeg"]), config).numpy()
    searcher = open_backend(index)
    for (scene_id, category), jpeg in pairs.items():
        q = tower(image_bytes=tf.constant([jpeg]), category=tf.constant([category]))["query"].numpy()
        members = index.product_ids[index.category_ids == index.category_id(category)]
        ids, d_star = searcher.search(q, category, len(members))
        scene = eval_view(decode_image(jpeg), config).numpy()
        batch = np.stack([images[m] for m in members])
        d = triplet({"scene": np.repeat(scene[None], len(members), 0), "positive": batch, "negative": batch,
                     "category": np.full(len(members), config.categories.index(category), np.int32)})["d_pos"]
        d = np.asarray(d)
        expected = members[np.argsort(d, kind="stable")]
        assert list(ids[0]) == list(expected), (scene_id, category)
        np.testing.assert_allclose(d_star[0], np.sort(d), atol=1e-5)


@pytest.mark.slow
def test_query_json_prints_only_a_sorted_list(setup):
    *_, index_path, _, scene, category = setup
    proc = _cli("query", f"--index={index_path}", f"--scene={scene}", f"--category={category}", "--k=3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)  # the whole of stdout is the JSON list
    assert [sorted(r) for r in results] == [["d_star", "product_id"]] * len(results)
    assert 1 <= len(results) <= 3
    assert [r["d_star"] for r in results] == sorted(r["d_star"] for r in results)
    assert results == recommend.run_query(index_path, scene, category, 3)


@pytest.mark.slow
def test_backends_give_the_same_answer(setup):
    *_, index_path, _, scene, category = setup
    answers = [recommend.run_query(index_path, scene, category, 5, backend=b) for b in ("numpy", "tf", "faiss")]
    assert [r["product_id"] for r in answers[1]] == [r["product_id"] for r in answers[0]]
    assert [r["product_id"] for r in answers[2]] == [r["product_id"] for r in answers[0]]


def test_unknown_category_is_a_one_line_error(setup):
    config, *_, index_path, _, scene, _ = setup
    proc = _cli("query", f"--index={index_path}", f"--scene={scene}", "--category=dresses", "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"recommend query: error: unknown category 'dresses'; valid: {', '.join(config.categories)}")


def test_index_of_another_size_is_refused(setup, tmp_path):
    """An index with 8-d embeddings against the 16-d smoke tower: refused before searching."""
    *_, index_path, _, scene, category = setup
    good = load_index(index_path)
    bad = CatalogIndex(good.product_ids, good.category_ids, np.ones((len(good), 8), np.float32) / np.sqrt(8),
                       good.categories, {k: v for k, v in good.meta.items() if k != "npz_sha256"})
    save_index(bad, tmp_path / "bad")
    with pytest.raises(ValueError, match="embedding size 8 vs 16"):
        recommend.run_query(str(tmp_path / "bad"), scene, category, 3)


@pytest.mark.slow
def test_recommender_savedmodel_matches_index_and_refuses_other_versions(setup):
    """export --catalog_index bundles the index: recommender/2 top-3 == index top-3 for every scene;
    the v1 index against scene tower v2 is refused (tower version 1 vs 2)."""
    config, _, _, model_dir, export_dir, index_path, pairs, scene, category = setup
    written = bundle.export_towers(model_dir, export_dir, catalog_index=index_path, top_k=3)
    assert written["recommender"] == os.path.join(export_dir, "recommender", "2")
    serve = tf.saved_model.load(written["recommender"]).signatures["serving_default"]
    tower = tf.saved_model.load(written["scene_tower"]).signatures["serving_default"]
    searcher = open_backend(load_index(index_path))
    keys = list(pairs)
    out = serve(image_bytes=tf.constant([pairs[k] for k in keys]), category=tf.constant([c for _, c in keys]))
    queries = tower(image_bytes=tf.constant([pairs[k] for k in keys]), category=tf.constant([c for _, c in keys]))
    for row, (_, cat) in enumerate(keys):
        ids, d_star = searcher.search(queries["query"].numpy()[row], cat, 3)
        n = int(out["num_results"][row])
        assert n == len(ids[0])
        assert [p.decode() for p in out["product_ids"].numpy()[row][:n]] == list(ids[0])
        np.testing.assert_allclose(out["d_star"].numpy()[row][:n], d_star[0], atol=1e-5)
    with pytest.raises(ValueError, match="tower version 1 vs 2"):
        recommend.run_query(index_path, scene, category, 3, version=2)


@pytest.mark.slow
def test_truncated_scene_jpeg_is_a_one_line_error(setup, tmp_path):
    """A JPEG cut in half keeps its magic bytes, so only decoding finds it (it used to end in an
    InvalidArgumentError traceback)."""
    *_, index_path, _, scene, category = setup
    truncated = tmp_path / "truncated.jpg"
    data = open(scene, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    proc = _cli("query", f"--index={index_path}", f"--scene={truncated}", f"--category={category}")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"recommend query: error: scene {truncated} cannot be decoded (truncated or corrupt image)")


@pytest.mark.slow
def test_approximate_index_on_the_demo_catalog_is_exact(setup, tmp_path):
    """--backend=ivf records the backend and per-category params; every demo category is below the
    size threshold, so it is searched exactly: the same answers as the exact index (recall 1.0).
    Asking the exact index for the approximate backend is refused in one line."""
    _, data_dir, _, _, export_dir, index_path, _, scene, category = setup
    recommend.run_index(export_dir, f"{data_dir}:test", str(tmp_path / "ann"), backend="ivf")
    meta = load_index(tmp_path / "ann").meta["search"]
    assert meta["backend"] == "ivf" and meta["min_size"] == 10_000
    assert all(p["exact"] for p in meta["categories"].values())
    approx = recommend.run_query(str(tmp_path / "ann"), scene, category, 5)
    exact = recommend.run_query(index_path, scene, category, 5, backend="numpy")
    assert [r["product_id"] for r in approx] == [r["product_id"] for r in exact]
    # a second embedding run and FAISS vs numpy dot products differ in float rounding only
    np.testing.assert_allclose([r["d_star"] for r in approx], [r["d_star"] for r in exact], atol=1e-5)
    proc = _cli("query", f"--index={index_path}", f"--scene={scene}", f"--category={category}", "--backend=ivf")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"holds the numpy backend, not ivf; rebuild it with `ctl recommend index --backend=ivf "
            f"--export_dir={export_dir} --products={data_dir}:test --index={index_path}`"
            in proc.stderr.strip().splitlines()[-1])


@pytest.mark.slow
def test_milvus_index_on_the_demo_catalog_equals_numpy(setup, tmp_path):
    """`index --backend=milvus --milvus_index=FLAT` (Milvus Lite beside the index): the json records
    the backend, `query` and `look` use it and give exactly the exact index's ranking (a second
    embedding run differs in float rounding only)."""
    pytest.importorskip("pymilvus")
    _, data_dir, _, _, export_dir, index_path, _, scene, category = setup
    stem = str(tmp_path / "mv")
    proc = _cli("index", f"--export_dir={export_dir}", f"--products={data_dir}:test", f"--index={stem}",
                "--backend=milvus", "--milvus_index=FLAT")
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = load_index(stem).meta["search"]
    assert meta["backend"] == "milvus" and meta["index_type"] == "FLAT"
    assert re.fullmatch(r"mv\.milvus\.g1_[0-9a-f]{6}_\d+\.db", meta["uri"]), meta["uri"]  # generation 1's database
    looks = json.loads(_cli("look", f"--index={stem}", f"--scene={scene}", "--k=5", "--json").stdout)
    exact = recommend.run_look(index_path, scene, 5, backend="numpy")
    assert list(looks) == list(exact)
    for name in exact:
        assert [r["product_id"] for r in looks[name]] == [r["product_id"] for r in exact[name]]
        np.testing.assert_allclose([r["d_star"] for r in looks[name]], [r["d_star"] for r in exact[name]], atol=1e-5)


def _assert_same(got, expected):
    """Same ids in the same order, d* within 1e-6 (batches of another size round differently)."""
    assert [r["product_id"] for r in got] == [r["product_id"] for r in expected]
    np.testing.assert_allclose([r["d_star"] for r in got], [r["d_star"] for r in expected], atol=1e-6)


@pytest.mark.slow
def test_look_equals_query_once_per_category(setup):
    """`look --json` (every category, backbone once) == `query` called per category: same ids, d* within 1e-6."""
    config, *_, index_path, _, scene, _ = setup
    proc = _cli("look", f"--index={index_path}", f"--scene={scene}", "--k=3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    looks = json.loads(proc.stdout)  # the whole of stdout is the JSON object
    assert list(looks) == list(config.categories)
    for category in config.categories:
        _assert_same(looks[category], recommend.run_query(index_path, scene, category, 3))
    some = recommend.run_look(index_path, scene, 3, "shoes,tops")  # a batch of 2 categories, not 5
    assert list(some) == ["shoes", "tops"]
    _assert_same(some["tops"], looks["tops"])
    text = _cli("look", f"--index={index_path}", f"--scene={scene}", "--k=2", "--categories=shoes")
    assert text.returncode == 0 and "shoes: top" in text.stdout and looks["shoes"][0]["product_id"] in text.stdout


def test_look_unknown_categories_is_one_line_listing_valid_ones(setup):
    config, *_, index_path, _, scene, _ = setup
    proc = _cli("look", f"--index={index_path}", f"--scene={scene}", "--categories=shoes,dresses,hats")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"recommend look: error: unknown categories 'dresses', 'hats'; valid: {', '.join(config.categories)}")


@pytest.mark.slow
def test_look_category_with_empty_catalog_is_empty_not_an_error(setup, tmp_path):
    """An index without any shoes: look answers shoes with [] and the other categories as before."""
    *_, index_path, _, scene, _ = setup
    full = load_index(index_path)
    keep = full.category_ids != full.category_id("shoes")
    save_index(CatalogIndex(full.product_ids[keep], full.category_ids[keep], full.embeddings[keep], full.categories,
                            {k: v for k, v in full.meta.items() if k != "npz_sha256"}), tmp_path / "noshoes")
    looks = recommend.run_look(str(tmp_path / "noshoes"), scene, 3)
    assert looks["shoes"] == []
    _assert_same(looks["tops"], recommend.run_look(index_path, scene, 3, "tops")["tops"])


@pytest.mark.slow
def test_index_inside_an_export_tower_dir_or_over_a_user_file_is_refused(tmp_path):
    """Before any embedding: --index inside export/x/scene_tower/99
    left a version dir 99 without saved_model.pb; --index=notes beside the user's notes.json replaced it."""
    stem = tmp_path / "export" / "x" / "scene_tower" / "99" / "catalog"
    with pytest.raises(ValueError, match=r"is inside the export's tower directory .*scene_tower, where a directory "
                                         r"counts as a model version"):
        recommend.run_index(str(tmp_path / "export" / "x"), "products", str(stem))
    assert not (tmp_path / "export").exists()
    (tmp_path / "notes.json").write_text("{}")
    proc = _cli("index", f"--export_dir={tmp_path / 'nowhere'}", "--products=x", f"--index={tmp_path / 'notes'}")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"recommend index: error: {tmp_path / 'notes.json'} exists and is not a ctl_keras catalog index; refusing "
        "to replace it (move it away or choose another --index)")
    assert (tmp_path / "notes.json").read_text() == "{}"
