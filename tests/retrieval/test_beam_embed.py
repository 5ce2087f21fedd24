"""Catalog embedding on Beam (RunInference, FnApiRunner): the index equals direct calls of the product
tower SavedModel, bad images are skipped and counted, runner options pass through."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from ctl_keras.retrieval import bundle
from ctl_keras.retrieval import beam_embed
from ctl_keras.retrieval.catalog import iter_products
from ctl_keras.retrieval.index import load_index

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def tower(synthetic_data, untrained_model, tmp_path_factory):
    """(config, data_dir, export_dir, product tower version dir, direct signature call)."""
    config, data_dir = synthetic_data
    export_dir = str(tmp_path_factory.mktemp("beam_embed") / "export")
    written = bundle.export_towers(untrained_model[2], export_dir)
    signature = tf.saved_model.load(written["product_tower"]).signatures["serving_default"]
    return config, data_dir, export_dir, written["product_tower"], \
        lambda images: signature(image_bytes=tf.constant(images))["product_embedding"].numpy()


def _expected(products, categories, embed):
    """The loop `recommend index` ran before Beam: source order, first occurrence, batches of 32."""
    ids, cats, images = [], [], []
    for product_id, category, image in iter_products(products, categories):
        if product_id not in ids:
            ids.append(product_id)
            cats.append(categories.index(category))
            images.append(image)
    return ids, cats, np.concatenate([embed(images[i:i + 32]) for i in range(0, len(images), 32)])


def _bad_catalog(root, data_dir, categories):
    """<root>/<category>/<id>.jpg from two products per category of the dataset, plus one truncated JPEG (valid magic),
    one text file named .jpg and one id repeated in a second category."""
    by_category = {}
    for product in iter_products(f"{data_dir}:test", categories):
        by_category.setdefault(product[1], []).append(product)
    products = [p for group in by_category.values() for p in group[:2]]
    for product_id, category, image in products:
        (root / category).mkdir(parents=True, exist_ok=True)
        (root / category / f"{product_id}.jpg").write_bytes(image)
    # the duplicate goes into a category directory read later, so the first one is kept
    first_id, first_cat, first_image = min(products, key=lambda p: p[1])
    other = max(categories)
    assert other > first_cat
    (root / other).mkdir(exist_ok=True)
    (root / first_cat / "truncated.jpg").write_bytes(first_image[: len(first_image) // 2])
    (root / first_cat / "notes.jpg").write_bytes(b"not an image")
    (root / other / f"{first_id}.jpg").write_bytes(first_image)  # duplicate id in another category
    return products


@pytest.mark.slow
def test_index_equals_direct_tower_calls(tower):
    """Every split of the dataset (a product in several splits counted once), embedded on Beam with
    batches of 5: same ids, order and categories as the direct loop, embeddings within 1e-6."""
    config, data_dir, export_dir, _, embed = tower
    index = beam_embed.build_index(export_dir, data_dir, batch_size=5)
    ids, cats, embeddings = _expected(data_dir, config.categories, embed)
    assert list(index.product_ids) == ids and list(index.category_ids) == cats
    np.testing.assert_allclose(index.embeddings, embeddings, atol=1e-6, rtol=0)
    assert index.meta["skipped"] == {"not_an_image": 0, "unknown_category": 0, "duplicate_id": 0, "corrupt_image": 0,
                                   "not_a_file": 0, "read_timeout": 0}
    assert index.meta["runner"] == "FnApiRunner" and index.meta["tower_version"] == 1


def test_bad_images_are_skipped_and_counted(tower, tmp_path, monkeypatch):
    """A truncated JPEG with valid magic used to kill the run (InvalidArgumentError in its batch):
    now only that image is skipped (corrupt_image), its batch-mates are embedded exactly. The progress
    (log mode) accounts for every image file read, embedded or skipped, once."""
    from ctl_keras.utils import progress

    config, data_dir, export_dir, _, embed = tower
    products = _bad_catalog(tmp_path / "catalog", data_dir, config.categories)
    lines = []
    monkeypatch.setenv(progress.ENV, "log")
    monkeypatch.setattr(progress, "_default_log", lines.append)
    index = beam_embed.build_index(export_dir, str(tmp_path / "catalog"), batch_size=4,
                                   staging_parent=str(tmp_path))
    files = [f for _, _, names in os.walk(tmp_path / "catalog") for f in names if f.endswith((".jpg", ".png"))]
    assert len(files) == len(products) + 3  # + not an image, a duplicate id, a truncated JPEG
    assert lines and lines[-1].startswith(f"index: embed: 100% {len(files)}/{len(files)} [")
    assert index.meta["skipped"] == {"not_an_image": 1, "unknown_category": 0, "duplicate_id": 1, "corrupt_image": 1,
                                     "not_a_file": 0, "read_timeout": 0}
    expected = sorted(products, key=lambda p: (p[1], p[0] + ".jpg"))  # category dir, then file name
    assert list(index.product_ids) == [p[0] for p in expected]
    np.testing.assert_allclose(index.embeddings, embed([p[2] for p in expected]), atol=1e-6, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog"]  # staging dir removed


def test_handler_marks_only_the_undecodable_image(tower):
    _, data_dir, _, version_dir, embed = tower
    images = [image for _, _, image in iter_products(f"{data_dir}:test", tower[0].categories)][:2]
    handler = beam_embed.ProductTowerHandler(version_dir, batch_size=3)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 3, "max_batch_size": 3}
    batch = [images[0], images[1][:100], images[1]]
    results = handler.run_inference(batch, handler.load_model())
    assert results[1].inference is None
    np.testing.assert_allclose(np.stack([results[0].inference, results[2].inference]),
                               embed([images[0], images[1]]), atol=1e-6, rtol=0)


def test_local_runner_is_pinned_and_options_pass_through():
    """No --runner or DirectRunner (which tries Prism, a binary download, first) -> FnApiRunner."""
    assert beam_embed.pipeline_options([]).view_as(StandardOptions).runner == "FnApiRunner"
    assert beam_embed.pipeline_options(["--runner=DirectRunner"]).view_as(StandardOptions).runner == "FnApiRunner"
    options = beam_embed.pipeline_options(["--runner=DataflowRunner", "--direct_num_workers=2"])
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(DirectOptions).direct_num_workers == 2


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ctl_keras.recommend", *args], capture_output=True, text=True,
                          env=ENV)


@pytest.mark.slow
def test_cli_two_worker_processes_and_bad_images(tower, tmp_path):
    """The CLI on the bad catalog with two worker processes: the same index as in process, counts in
    the json; an unknown runner is Beam's own one-line message."""
    config, data_dir, export_dir, _, _ = tower
    _bad_catalog(tmp_path / "catalog", data_dir, config.categories)
    proc = _cli("index", f"--export_dir={export_dir}", f"--products={tmp_path / 'catalog'}",
                f"--index={tmp_path / 'cat'}", "--batch_size=3", "--direct_num_workers=2",
                "--direct_running_mode=multi_processing")
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_index(tmp_path / "cat")
    one = beam_embed.build_index(export_dir, str(tmp_path / "catalog"), batch_size=3, staging_parent=str(tmp_path))
    assert list(two.product_ids) == list(one.product_ids) and two.meta["skipped"] == one.meta["skipped"]
    np.testing.assert_allclose(two.embeddings, one.embeddings, atol=1e-6, rtol=0)
    proc = _cli("index", f"--export_dir={export_dir}", f"--products={tmp_path / 'catalog'}",
                f"--index={tmp_path / 'cat2'}", "--runner=NoSuchRunner")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("recommend index: error: Unexpected pipeline runner: NoSuchRunner")
    assert not (tmp_path / "cat2.json").exists()


def _add_non_files(root, category):
    """A directory named x.jpg, a dangling symlink y.jpg and a FIFO z.jpg in one category directory."""
    (root / category / "dir.jpg").mkdir()
    os.symlink(root / "nowhere.jpg", root / category / "dangling.jpg")
    os.mkfifo(root / category / "fifo.jpg")


def test_non_files_are_skipped_and_counted_never_opened(tower, tmp_path):
    """a directory named x.jpg and a dangling symlink used to abort the run with
    a Beam traceback, a FIFO to block it forever: each is now counted as not_a_file and the rest
    indexed as without them."""
    config, data_dir, export_dir, _, embed = tower
    products = _bad_catalog(tmp_path / "catalog", data_dir, config.categories)
    _add_non_files(tmp_path / "catalog", products[0][1])
    index = beam_embed.build_index(export_dir, str(tmp_path / "catalog"), batch_size=4, staging_parent=str(tmp_path))
    assert index.meta["skipped"]["not_a_file"] == 3 and index.meta["skipped"]["corrupt_image"] == 1
    assert len(index) == len(products)


def test_read_regular_file_refuses_fifo_and_honours_the_deadline(tmp_path):
    """A FIFO with no writer is never read (opening it for reading would block); a slow read past
    the deadline is a skip reason, not a hang; a regular file reads whole."""
    from ctl_keras.retrieval.catalog import read_regular_file

    os.mkfifo(tmp_path / "fifo.jpg")
    assert read_regular_file(str(tmp_path / "fifo.jpg")) == "not_a_file"
    assert read_regular_file(str(tmp_path / "missing.jpg")) == "not_a_file"
    (tmp_path / "dir.jpg").mkdir()
    assert read_regular_file(str(tmp_path / "dir.jpg")) == "not_a_file"  # opens read-only, is no file
    (tmp_path / "big.jpg").write_bytes(b"\xff" * (3 << 20))
    assert read_regular_file(str(tmp_path / "big.jpg"), deadline_s=-1) == "read_timeout"
    assert read_regular_file(str(tmp_path / "big.jpg")) == b"\xff" * (3 << 20)


def test_staging_dirs_of_dead_runs_are_removed_nothing_else(tower, tmp_path):
    """a SIGKILLed `recommend index` left `.tmp-embed-*`; the next run removes those
    whose process is gone, and keeps a live process's, other names, and a symlink."""
    _, data_dir, export_dir, _, _ = tower
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        parent = tmp_path / "out"
        for name in (f".tmp-embed-{dead.pid}-abc123", f".tmp-embed-{live.pid}-abc123", ".tmp-embed-legacy",
                     "mine"):
            (parent / name).mkdir(parents=True)
        (parent / f".tmp-embed-{dead.pid}-abc123" / "part-0.tfrecord").write_bytes(b"")
        os.symlink(parent / "mine", parent / f".tmp-embed-{dead.pid}-link")
        index = beam_embed.build_index(export_dir, f"{data_dir}:test", batch_size=8, staging_parent=str(parent))
        assert len(index) > 0
        assert sorted(p.name for p in parent.iterdir()) == sorted(
            [f".tmp-embed-{live.pid}-abc123", ".tmp-embed-legacy", "mine", f".tmp-embed-{dead.pid}-link"])
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow
def test_cli_on_a_fifo_catalog_finishes_and_sigterm_is_one_line(tower, tmp_path):
    """The CLI on a catalog holding a FIFO named x.jpg finishes (it used to block forever) and reports
    not_a_file in the json; SIGTERM during a run prints one line and exits 143, no traceback."""
    import signal
    import time

    config, data_dir, export_dir, _, _ = tower
    products = _bad_catalog(tmp_path / "catalog", data_dir, config.categories)
    _add_non_files(tmp_path / "catalog", products[0][1])
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "index", f"--export_dir={export_dir}",
                           f"--products={tmp_path / 'catalog'}", f"--index={tmp_path / 'cat'}"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_index(tmp_path / "cat").meta["skipped"]["not_a_file"] == 3
    run = subprocess.Popen([sys.executable, "-m", "ctl_keras.recommend", "index", f"--export_dir={export_dir}",
                            f"--products={data_dir}", f"--index={tmp_path / 'cat2'}"],
                           stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".tmp-embed-") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "recommend index: terminated"
