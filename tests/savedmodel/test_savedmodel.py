"""Exported SavedModels, tested the way TF Serving uses them: a fresh process that never imports
ctl_keras, named signatures called with keyword arguments, saved_model_cli, warmup replay."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tests.helpers.smoke_catalog_export import export_smoke_catalog
import tensorflow as tf

from ctl_keras.config import get_config
from ctl_keras.data.pipeline import decode_image, eval_view
from ctl_keras.model.ctl import build_ctl
from ctl_keras.savedmodel import exporter, versions, warmup

VENV_BIN = os.path.dirname(sys.executable)

# Runs in a fresh interpreter: only tensorflow + tensorflow_serving, like the model server.
FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    dirs, inputs_path, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    keras_before = {m for m in sys.modules if m.split(".")[0] in ("keras", "tf_keras")}
    x = dict(np.load(inputs_path, allow_pickle=True))
    calls = {
        "scene_tower": {"serving_default": dict(image_bytes=x["bytes"], category=x["category"]),
                        "predict_images": dict(images=x["floats"], category=x["category"]),
                        "complete_look": dict(image_bytes=x["bytes"]),
                        "complete_look_categories": dict(image_bytes=x["bytes"], categories=x["look"])},
        "product_tower": {"serving_default": dict(image_bytes=x["bytes"]),
                          "predict_images": dict(images=x["floats"])},
        "recommender": {"serving_default": dict(image_bytes=x["bytes"], category=x["category"]),
                        "complete_look": dict(image_bytes=x["bytes"]),
                        "complete_look_categories": dict(image_bytes=x["bytes"], categories=x["look"])},
    }
    out, info = {}, {"warmup": {}}
    for model, path in dirs.items():
        loaded = tf.saved_model.load(path)
        for sig, kwargs in calls[model].items():
            res = loaded.signatures[sig](**{k: tf.constant(v) for k, v in kwargs.items()})
            for name, value in res.items():
                out[f"{model}/{sig}/{name}"] = value.numpy()
        n = 0
        for rec in tf.data.TFRecordDataset(path + "/assets.extra/tf_serving_warmup_requests"):
            req = prediction_log_pb2.PredictionLog.FromString(rec.numpy()).predict_log.request
            kwargs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
            res = loaded.signatures[req.model_spec.signature_name](**kwargs)
            assert all(np.all(np.isfinite(v.numpy())) for v in res.values() if v.dtype.is_floating)
            n += 1
        info["warmup"][model] = n
    info["ctl_keras_imported"] = any(m.startswith("ctl_keras") for m in sys.modules)
    info["keras_imported_by_tensorflow"] = "keras" in keras_before
    info["keras_modules_added_by_loading"] = sorted(
        {m for m in sys.modules if m.split(".")[0] in ("keras", "tf_keras")} - keras_before)
    np.savez(out_path, **out)
    print(json.dumps(info))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A smoke model exported with a 6-product catalog; inputs: a JPEG and a PNG scene."""
    export_dir = str(tmp_path_factory.mktemp("export"))
    config, models, index, dirs = export_smoke_catalog(export_dir, top_k=2)
    images = warmup.example_images(config, seed=7)
    floats = np.stack([eval_view(decode_image(b), config).numpy() for b in images])
    category = np.array(["shoes", "tops"], dtype=object)
    return config, models, index, export_dir, dirs, images, floats, category


@pytest.fixture(scope="module")
def fresh_run(exported, tmp_path_factory):
    """Run FRESH in a subprocess; (outputs, info)."""
    _, _, _, _, dirs, images, floats, category = exported
    tmp = tmp_path_factory.mktemp("fresh")
    np.savez(tmp / "in.npz", bytes=np.array(images, dtype=object), floats=floats, category=category,
             look=np.array(["shoes", "tops", "shoes"], dtype=object))
    proc = subprocess.run([sys.executable, "-c", FRESH, json.dumps(dirs), str(tmp / "in.npz"), str(tmp / "out.npz")],
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp / "out.npz", allow_pickle=True)), json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_layout_versions_and_meta(exported):
    """A first export is version 1 of every model; the metadata names the model and its size."""
    config, models, _, export_dir, dirs, *_ = exported
    assert sorted(dirs) == ["product_tower", "recommender", "scene_tower"]
    for name, path in dirs.items():
        assert path == os.path.join(export_dir, name, "1")
        assert versions.existing_versions(os.path.join(export_dir, name)) == [1]
        meta = exporter.read_meta(path)
        assert (meta["model"], meta["version"], meta["embedding_dim"]) == (name, 1, config.embedding_dim)
        assert meta["model_fingerprint"] == exporter.model_fingerprint(models)
        # nothing but the version dir: the staging dir was renamed, not copied
        assert os.listdir(os.path.join(export_dir, name)) == ["1"]


@pytest.mark.slow
def test_fresh_process_never_imports_ctl_keras(fresh_run):
    _, info = fresh_run
    assert info["ctl_keras_imported"] is False
    # `import tensorflow` (2.21) itself imports keras, so "keras not in sys.modules" cannot hold in
    # any Python process; what can be checked is that loading and calling the models imports no
    # further keras module: the SavedModels hold no Keras objects.
    assert info["keras_modules_added_by_loading"] == []


def test_towers_match_in_memory_model(exported, fresh_run):
    """Bytes and float signatures in a fresh process == the Keras towers on pipeline-decoded images."""
    config, models, *_, floats, category = exported
    out, _ = fresh_run
    ids = np.array([config.categories.index(c) for c in category], np.int32)
    scene = models.scene_tower({"image": floats, "category": ids})
    product = models.product_tower({"image": floats})["product_embedding"].numpy()
    for sig in ("serving_default", "predict_images"):
        for name in ("query", "scene_embedding", "attention"):
            np.testing.assert_allclose(out[f"scene_tower/{sig}/{name}"], scene[name].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(out[f"product_tower/{sig}/product_embedding"], product, atol=1e-5, rtol=0)
    g = config.local_grid
    assert out["scene_tower/serving_default/attention"].shape == (2, g, g)


def test_in_graph_preprocessing_is_the_pipeline_eval_view(exported):
    """The graph's decode+resize+crop gives the same pixels as ctl_keras.data.pipeline (0 difference)."""
    config, *_, images, floats, _ = exported
    from ctl_keras.savedmodel.signatures import preprocess_bytes

    got = tf.function(lambda b: preprocess_bytes(b, config))(tf.constant(images)).numpy()
    np.testing.assert_array_equal(got, floats)


def test_recommender_matches_catalog_ranking(exported, fresh_run):
    """Top-2 of the bundled catalog == exact ranking of q·f_p within the category (p1,p2,p4 are shoes)."""
    config, models, index, *_, floats, category = exported
    out, _ = fresh_run
    q = models.scene_tower({"image": floats, "category": np.array([2, 0], np.int32)})["query"].numpy()
    for row, cat in enumerate([2, 0]):
        members = np.flatnonzero(index.category_ids == cat)
        scores = index.embeddings[members] @ q[row]
        order = members[np.argsort(-scores, kind="stable")][:2]
        assert [p.decode() for p in out["recommender/serving_default/product_ids"][row]] == list(index.product_ids[order])
        np.testing.assert_allclose(out["recommender/serving_default/d_star"][row], 2 - np.sort(scores)[::-1][:2], atol=1e-5)
    np.testing.assert_array_equal(out["recommender/serving_default/num_results"], [2, 2])


def test_every_warmup_record_replayed(exported, fresh_run):
    """2 bytes requests + 1 float request per model (+ 2 complete_look ones for the scene tower and
    the recommender), all replayed in the fresh process."""
    _, info = fresh_run
    assert info["warmup"] == {"scene_tower": 5, "product_tower": 3, "recommender": 5}


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(exported):
    *_, dirs, _, _, _ = exported
    for name, path in dirs.items():
        proc = subprocess.run([os.path.join(VENV_BIN, "saved_model_cli"), "show", "--dir", path, "--all"],
                              capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        for expected in ("signature_def['serving_default']", "signature_def['predict_images']", "image_bytes"):
            assert expected in proc.stdout, (name, expected)
    scene = subprocess.run([os.path.join(VENV_BIN, "saved_model_cli"), "show", "--dir", dirs["scene_tower"], "--all"],
                           capture_output=True, text=True).stdout
    for output in ("outputs['query']", "outputs['scene_embedding']", "outputs['attention']"):
        assert output in scene


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_bytes=[b"not an image"], category=["shoes"]), "not a JPEG or PNG"),
    (dict(image_bytes=[], category=[]), "empty batch"),
    (dict(image_bytes=["JPEG"], category=["dresses"]), "unknown category name(s):] [dresses] [valid names: tops, pants"),
])
@pytest.mark.slow
def test_bad_input_fails_with_a_clear_assertion(exported, kwargs, message):
    *_, dirs, images, _, _ = exported
    loaded = tf.saved_model.load(dirs["scene_tower"])
    kwargs = {k: tf.constant([images[0] if v == "JPEG" else v for v in vs], tf.string) for k, vs in kwargs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        loaded.signatures["serving_default"](**kwargs)
    assert message in str(err.value)


def test_warmup_sends_one_category_per_image_with_few_categories():
    """With a single category the float request still has 2 images and 2 names (a mismatch would make
    the server's warmup replay, and so the model load, fail)."""
    from ctl_keras.savedmodel import signatures

    config = get_config("synthetic", smoke=True).replace(categories=("shoes",))
    module = signatures.scene_tower_module(build_ctl(config).scene_tower, config)
    request = warmup.module_requests("scene_tower", module, config)[-1].predict_log.request
    assert request.model_spec.signature_name == "predict_images"
    images, names = (tf.make_ndarray(request.inputs[k]) for k in ("images", "category"))
    assert images.shape[0] == 2 and names.tolist() == [b"shoes", b"shoes"]


def test_complete_look_equals_one_call_per_category(exported, fresh_run):
    """Fresh process: scene tower complete_look [B, C, ...] == the Keras tower once per category;
    complete_look_categories picks (and may repeat) categories; the recommender's look == its
    serving_default per category, padded where a category has < K products (pants 1, handbags 0)."""
    config, models, index, *_, floats, _ = exported
    out, _ = fresh_run
    C, g = len(config.categories), config.local_grid
    assert out["scene_tower/complete_look/query"].shape == (2, C, config.embedding_dim)
    assert out["scene_tower/complete_look/attention"].shape == (2, C, g, g)
    queries = []
    for c in range(C):
        scene = models.scene_tower({"image": floats, "category": np.full(2, c, np.int32)})
        for name in ("query", "attention"):
            np.testing.assert_allclose(out[f"scene_tower/complete_look/{name}"][:, c], scene[name].numpy(), atol=1e-5)
        queries.append(scene["query"].numpy())
    picked = [config.categories.index(c) for c in ("shoes", "tops", "shoes")]
    np.testing.assert_allclose(out["scene_tower/complete_look_categories/query"],
                               out["scene_tower/complete_look/query"][:, picked], atol=1e-6)
    for c in range(C):
        members = np.flatnonzero(index.category_ids == c)
        for row in range(2):
            scores = index.embeddings[members] @ queries[c][row]
            order = np.argsort(-scores, kind="stable")[:2]
            n = int(out["recommender/complete_look/num_results"][row, c])
            assert n == min(2, len(members))
            ids = [p.decode() for p in out["recommender/complete_look/product_ids"][row, c]]
            assert ids == list(index.product_ids[members[order]]) + [""] * (2 - n)
            np.testing.assert_allclose(out["recommender/complete_look/d_star"][row, c],
                                       list(2 - scores[order]) + [4.0] * (2 - n), atol=1e-5)
    np.testing.assert_array_equal(out["recommender/complete_look_categories/product_ids"],
                                  out["recommender/complete_look/product_ids"][:, picked])


@pytest.mark.parametrize("categories, message", [
    (["shoes", "dresses"], "unknown category name(s):] [dresses] [valid names: tops, pants"),
    ([], "empty category list"),
])
@pytest.mark.slow
def test_complete_look_bad_categories_fail_clearly(exported, categories, message):
    *_, dirs, images, _, _ = exported
    for model in ("scene_tower", "recommender"):
        fn = tf.saved_model.load(dirs[model]).signatures["complete_look_categories"]
        with pytest.raises(tf.errors.InvalidArgumentError) as err:
            fn(image_bytes=tf.constant(images[:1]), categories=tf.constant(categories, tf.string))
        assert message in str(err.value)
