"""`recommend index --update/--remove`: an update embeds only new or changed products and equals
indexing everything at once; removed ids are never returned; each change is a new generation whose
predecessor stays readable; the approximate part follows; another tower is refused."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.retrieval import bundle
from ctl_keras.retrieval import beam_embed
from ctl_keras.retrieval.faiss_ann import CLASSES as FAISS_CLASSES
from ctl_keras.retrieval.catalog import iter_products
from ctl_keras.retrieval.index import CatalogIndex, index_paths, load_index, save_index
from ctl_keras.retrieval.search import open_backend
from ctl_keras.retrieval.update import update_index

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _write(root, products):
    for product_id, category, image in products:
        (root / category).mkdir(parents=True, exist_ok=True)
        (root / category / f"{product_id}.jpg").write_bytes(image)
    return str(root)


@pytest.fixture(scope="module")
def catalogs(synthetic_data, untrained_model, tmp_path_factory):
    """Export v1; A = the first half of the test products, B = the rest + one product of A with another
    image (changed) + one product of A as is (unchanged); AB = A ∪ B, B's image winning."""
    config, data_dir = synthetic_data
    tmp = tmp_path_factory.mktemp("update")
    export_dir = str(tmp / "export")
    bundle.export_towers(untrained_model[2], export_dir)
    products = list(iter_products(f"{data_dir}:test", config.categories))
    half = len(products) // 2
    a, b = products[:half], products[half:]
    changed = (a[0][0], a[0][1], b[0][2])  # A's first id, B's first image
    b_full = b + [changed, a[1]]
    ab = [changed] + a[1:] + b
    return (config, export_dir, _write(tmp / "A", a), _write(tmp / "B", b_full), _write(tmp / "AB", ab), tmp,
            changed[0], a[1][0], [p[0] for p in b])


@pytest.mark.slow
def test_update_equals_indexing_the_union_at_once(catalogs):
    config, export_dir, a_dir, b_dir, ab_dir, tmp, changed_id, same_id, b_ids = catalogs
    stem = str(tmp / "catalog")
    save_index(beam_embed.build_index(export_dir, a_dir, batch_size=4), stem)
    first_json = open(index_paths(stem)[1]).read()
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "index", "--update", f"--index={stem}",
                           f"--products={b_dir}", "--batch_size=4"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (f"+{len(b_ids)} new; 1 re-embedded (image changed: {changed_id}); 0 moved (category changed); "
            "-0 removed; 1 unchanged") in proc.stdout
    updated, union = load_index(stem), beam_embed.build_index(export_dir, ab_dir, batch_size=4)
    assert sorted(updated.product_ids) == sorted(union.product_ids)
    assert updated.meta["generation"] == 2
    rows = {p: i for i, p in enumerate(union.product_ids)}
    order = [rows[p] for p in updated.product_ids]
    np.testing.assert_array_equal(updated.category_ids, union.category_ids[order])
    np.testing.assert_array_equal(updated.image_sha256, union.image_sha256[order])
    np.testing.assert_allclose(updated.embeddings, union.embeddings[order], atol=1e-6)
    # A reader holding generation 1's json still finds generation 1's arrays, intact.
    old = json.loads(first_json)
    assert os.path.exists(tmp / old["npz_file"]) and old["npz_file"] != updated.meta["npz_file"]
    (tmp / "reader.json").write_text(first_json)  # that json, beside the index: it names catalog.npz
    assert len(load_index(tmp / "reader")) == sum(len(os.listdir(os.path.join(a_dir, c))) for c in os.listdir(a_dir))


@pytest.mark.slow
def test_remove_then_query_never_returns_removed_ids(catalogs, tmp_path):
    config, export_dir, a_dir, *_ = catalogs
    stem = str(tmp_path / "catalog")
    save_index(beam_embed.build_index(export_dir, a_dir, batch_size=4), stem)
    before = load_index(stem)
    gone = list(before.product_ids[::3])
    (tmp_path / "ids.txt").write_text("\n".join(gone + ["no-such-id", ""]) + "\n")
    report = update_index(stem, remove=str(tmp_path / "ids.txt"))
    assert sorted(report.removed) == sorted(gone) and report.not_found == ["no-such-id"] and report.added == []
    after = load_index(stem)
    assert sorted(after.product_ids) == sorted(set(before.product_ids) - set(gone))
    searcher, rng = open_backend(after), np.random.default_rng(0)
    for category in config.categories:
        ids, _ = searcher.search(rng.normal(size=(4, after.embedding_dim)).astype(np.float32), category, len(before))
        assert not set(ids.ravel()) & set(gone)
    # generation 1 (STEM.npz) is kept one generation longer, then deleted (the writers' STEM.lock too)
    update_index(stem, remove=str(tmp_path / "ids.txt"))
    assert sorted(p.name for p in tmp_path.iterdir() if "catalog" in p.name) == [
        "catalog.g2.npz", "catalog.g3.npz", "catalog.json"]


def test_update_with_another_tower_is_refused(catalogs, tmp_path):
    _, export_dir, a_dir, b_dir, *_ = catalogs
    index = beam_embed.build_index(export_dir, a_dir, batch_size=4)
    index.meta["model_fingerprint"] = "another model"
    save_index(index, tmp_path / "catalog")
    with pytest.raises(ValueError, match="does not match the product tower .*model weights differ"):
        update_index(str(tmp_path / "catalog"), b_dir)
    with pytest.raises(ValueError, match="embedded with tower version 1, not 2"):
        update_index(str(tmp_path / "catalog"), b_dir, version=2)


@pytest.mark.slow
def test_recommender_reexported_from_updated_index(catalogs, untrained_model):
    _, export_dir, *_, tmp, _, _, b_ids = catalogs
    stem = str(tmp / "catalog")
    if not os.path.exists(stem + ".json"):
        pytest.skip("needs test_update_equals_indexing_the_union_at_once's index")
    index = load_index(stem)
    written = bundle.export_towers(untrained_model[2], export_dir, catalog_index=stem, top_k=len(index))
    meta = json.load(open(os.path.join(written["recommender"], "assets.extra", "ctl_export.json")))
    assert meta["catalog"]["num_products"] == len(index)
    recommender = tf.saved_model.load(written["recommender"]).signatures["complete_look"]
    image = open(os.path.join(catalogs[4], index.categories[index.category_ids[0]],
                              index.product_ids[0] + ".jpg"), "rb").read()
    served = {p.decode() for p in recommender(image_bytes=tf.constant([image]))["product_ids"].numpy().ravel()}
    assert set(index.product_ids) <= served and set(b_ids) <= served


def test_approximate_part_rebuilt_for_changed_categories_only(tmp_path):
    """Two 2000-product categories with IVF indexes: removing products of category 0 rebuilds its IVF
    index (fewer vectors) and keeps category 1's byte for byte; no removed id is ever returned."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4000, 8)).astype(np.float32)
    index = CatalogIndex(np.array([f"p{i}" for i in range(4000)]), np.repeat([0, 1], 2000),
                         emb / np.linalg.norm(emb, axis=1, keepdims=True), ("a", "b"), {"tower_version": 1})
    backend = FAISS_CLASSES["ivf"].build(index, min_size=1000)
    save_index(index, tmp_path / "cat", search=backend)
    gone = [f"p{i}" for i in range(0, 2000, 7)]
    (tmp_path / "ids.txt").write_text("\n".join(gone))
    report = update_index(str(tmp_path / "cat"), remove=str(tmp_path / "ids.txt"))
    assert report.rebuilt_ann == ["a"]
    after = open_backend(load_index(tmp_path / "cat"))
    engine = lambda s, c: s.category(c)[1]  # noqa: E731
    assert engine(after, 0).engine.ntotal == 2000 - len(gone) and engine(after, 1).engine.ntotal == 2000
    np.testing.assert_array_equal(engine(after, 1).to_bytes(), backend.category(1)[1].to_bytes())
    ids, _ = after.search(after.index.embeddings[:50], "a", 100)
    assert not set(ids.ravel()) & set(gone)


def test_update_with_another_export_dir_is_refused(tmp_path):
    """`--update --export_dir=OTHER` used to be ignored silently (the index's own
    export was used): now refused in one line; the index's own export, spelled differently, is fine."""
    (tmp_path / "export").mkdir()
    index = CatalogIndex(np.array(["p0", "p1"]), np.array([0, 0]), np.eye(2, dtype=np.float32), ("a",),
                         {"tower_version": 1, "export_dir": str(tmp_path / "export")}, image_sha256=["0", "1"])
    save_index(index, tmp_path / "cat")
    (tmp_path / "ids.txt").write_text("p0\n")
    with pytest.raises(ValueError, match=r"--export_dir=.*other is not the export the index was embedded with"):
        update_index(str(tmp_path / "cat"), remove=str(tmp_path / "ids.txt"), export_dir=str(tmp_path / "other"))
    assert list(load_index(tmp_path / "cat").product_ids) == ["p0", "p1"]
    report = update_index(str(tmp_path / "cat"), remove=str(tmp_path / "ids.txt"),
                          export_dir=str(tmp_path / "." / "export"))
    assert report.removed == ["p0"] and list(load_index(tmp_path / "cat").product_ids) == ["p1"]


@pytest.mark.slow
def test_category_move_is_refiled_and_counted(catalogs, tmp_path):
    """The same image under another category folder is a change (it was "unchanged", filed under the
    old category for good): it is re-filed, counted `moved`, and found under its new category only."""
    config, export_dir, a_dir, *_ = catalogs
    products = list(iter_products(a_dir, config.categories))
    pid, category, image = products[0]
    other = next(c for c in config.categories if c != category)
    moved_dir = _write(tmp_path / "moved", [(pid, other, image)] + products[1:])
    stem = str(tmp_path / "catalog")
    save_index(beam_embed.build_index(export_dir, a_dir, batch_size=4), stem)
    before = load_index(stem)
    report = update_index(stem, moved_dir, batch_size=4)
    after = load_index(stem)
    row = list(after.product_ids).index(pid)
    assert after.categories[after.category_ids[row]] == other
    assert (report.moved, report.added, report.reembedded) == ([pid], [], [])
    assert report.unchanged == len(products) - 1 and f"1 moved (category changed: {pid})" in report.line()
    np.testing.assert_allclose(after.embeddings[row], before.embeddings[list(before.product_ids).index(pid)],
                               atol=1e-6)  # the product tower sees the image only
    searcher = open_backend(after)
    assert searcher.search(after.embeddings[row:row + 1], other, 1)[0][0][0] == pid
    assert pid not in searcher.search(after.embeddings[row:row + 1], category, len(after))[0].ravel()
    again = update_index(stem, moved_dir, batch_size=4)  # the same update twice: nothing left to do
    assert again.moved == [] and again.unchanged == len(products)


@pytest.mark.slow
def test_two_updates_at_once_lose_no_product(catalogs, tmp_path):
    """Two `recommend index --update` started together on one index (each used to print `generation 2`,
    the index keeping one run's products): one runs, the other refuses naming its pid; rerun, both are in."""
    config, export_dir, a_dir, b_dir, *_, b_ids = catalogs
    b = [p for p in iter_products(b_dir, config.categories) if p[0] in set(b_ids)]
    new = {"one": b[::2], "two": b[1::2]}
    for name, products in new.items():
        _write(tmp_path / name, products)
    save_index(beam_embed.build_index(export_dir, a_dir, batch_size=4), tmp_path / "catalog")
    a_ids = set(load_index(tmp_path / "catalog").product_ids)
    command = lambda d: [sys.executable, "-m", "ctl_keras.recommend", "index", "--update",  # noqa: E731
                         "--index=catalog", f"--products={d}", "--batch_size=4"]
    procs = {d: subprocess.Popen(command(d), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=ENV) for d in new}
    outs = {d: p.communicate(timeout=600) for d, p in procs.items()}
    assert sorted(p.returncode for p in procs.values()) == [0, 1], outs
    won, lost = sorted(new, key=lambda d: procs[d].returncode)
    assert outs[won][0].strip().endswith(f"generation 2: +{len(new[won])} new; 0 re-embedded (image changed); "
                                         "0 moved (category changed); -0 removed; 0 unchanged"), outs[won]
    assert outs[lost][1].strip().splitlines()[-1] == (
        f"recommend index: error: index catalog is being written by another `recommend index` (pid "
        f"{procs[won].pid}, lock catalog.lock); not waiting for it: rerun once it has finished")
    assert set(load_index(tmp_path / "catalog").product_ids) == a_ids | {p[0] for p in new[won]}
    rerun = subprocess.run(command(lost), cwd=tmp_path, capture_output=True, text=True, env=ENV)
    assert rerun.returncode == 0 and f"generation 3: +{len(new[lost])} new" in rerun.stdout, rerun.stderr[-2000:]
    assert set(load_index(tmp_path / "catalog").product_ids) == a_ids | {p[0] for p in b}


@pytest.mark.slow
def test_thumbnails_resolve_from_any_cwd_after_an_update_from_another_dir(catalogs, tmp_path, monkeypatch):
    """An index built from a relative --products, updated from a second directory: every product's
    image (the service's thumbnails) is found from another working directory, from the source it was
    last read from; the sources are recorded as absolute paths."""
    from ctl_keras.retrieval import jobs as recommend
    from ctl_keras.service.catalog import product_images

    config, export_dir, a_dir, b_dir, *_, changed_id, same_id, b_ids = catalogs
    for name, source in (("A", a_dir), ("B", b_dir)):
        shutil.copytree(source, tmp_path / "work" / name)
    monkeypatch.chdir(tmp_path / "work")
    recommend.run_index(export_dir, "A", "catalog", batch_size=4)
    update_index("catalog", "B", batch_size=4)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    index = load_index(tmp_path / "work" / "catalog")
    images = product_images(None, index, 1 << 30)
    assert set(images) == set(index.product_ids)
    assert index.meta["sources"] == [str(tmp_path / "work" / "A"), str(tmp_path / "work" / "B")]
    for pid, category in zip(index.product_ids, index.category_ids):
        newest = "B" if pid in {*b_ids, changed_id, same_id} else "A"
        path = tmp_path / "work" / newest / index.categories[category] / f"{pid}.jpg"
        assert images[pid] == path.read_bytes(), pid
