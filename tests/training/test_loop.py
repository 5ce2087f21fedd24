"""The training loop in-process: results.json, TensorBoard output, NaN stop, config mismatch."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.config import Config
from ctl_keras.data.fingerprint import dataset_fingerprint
from ctl_keras.evaluation import model_eval as evaluate
from ctl_keras.feature_cache import default_cache_dir
from ctl_keras.training import loop
from ctl_keras.training.optimizer import make_optimizer
from ctl_keras.training.summaries import read_scalars

SCALAR_TAGS = {"train/loss", "train/learning_rate", "train/steps_per_second", "val/auc"}


def _events(model_dir):
    """{tag: [(step, value or None for images)]} read back from the event files."""
    tags = {}
    for path in glob.glob(os.path.join(model_dir, "tensorboard", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                tags.setdefault(value.tag, []).append((event.step, array))
    return tags


def test_results_json_and_config(feature_run):
    """results.json has the issue's keys; its config and config.json round-trip to the run's Config."""
    config, _, model_dir, results = feature_run
    with open(os.path.join(model_dir, "results.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(results))
    for key in ("dataset", "variant", "val_auc", "test_auc", "best_epoch", "epochs_run", "train_seconds",
                "config", "git_commit"):
        assert key in on_disk, key
    assert on_disk["dataset"] == "synthetic" and on_disk["variant"] == config.variant
    assert on_disk["epochs_run"] == config.epochs == 3
    assert 1 <= on_disk["best_epoch"] <= 3
    assert 0.0 <= on_disk["val_auc"] <= 1.0 and 0.0 <= on_disk["test_auc"] <= 1.0
    assert on_disk["train_seconds"] > 0
    assert on_disk["git_commit"] is None or len(on_disk["git_commit"]) == 40
    assert Config.from_dict(on_disk["config"]) == config
    with open(os.path.join(model_dir, "config.json")) as f:
        assert Config.from_dict(json.load(f)) == config
    for name in ("best.weights.h5", "last.weights.h5", "checkpoints/ckpt-3.index"):
        assert os.path.exists(os.path.join(model_dir, name)), name


def test_tensorboard_tags_and_projector(feature_run):
    """Every scalar once per epoch, attention images per evaluation; val_auc is the best val/auc."""
    config, data_dir, model_dir, results = feature_run
    tags = _events(model_dir)
    for tag in SCALAR_TAGS:
        assert [step for step, _ in tags[tag]] == [1, 2, 3], tag
    assert float(tags["train/learning_rate"][0][1]) == pytest.approx(config.learning_rate)
    assert max(float(v) for _, v in tags["val/auc"]) == pytest.approx(results["val_auc"])
    images = tags["val/attention"]
    assert [step for step, _ in images] == [1, 2, 3]
    # An image summary tensor holds [width, height, png_1, ..., png_n] as strings.
    width, height, *pngs = images[0][1]
    assert int(width) == int(height) == config.image_size and len(pngs) >= 1

    logdir = os.path.join(model_dir, "tensorboard")
    with open(os.path.join(logdir, "metadata.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    with open(os.path.join(data_dir, "manifest.json")) as f:
        test_products = json.load(f)["splits"]["test"]["products"]
    assert rows[0] == ["id", "category"] and len(rows) == 1 + test_products
    assert {cat for _, cat in rows[1:]} <= set(config.categories)
    with open(os.path.join(logdir, "projector_config.pbtxt")) as f:
        assert "metadata.tsv" in f.read()
    matrix = tf.train.load_checkpoint(tf.train.latest_checkpoint(logdir)).get_tensor(
        "embedding/.ATTRIBUTES/VARIABLE_VALUE")
    assert matrix.shape == (test_products, config.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_checkpoint_of_another_config_is_refused(feature_run):
    """Same model_dir, other learning rate: one clear error naming the key; config.json untouched."""
    config, data_dir, model_dir, _ = feature_run
    before = open(os.path.join(model_dir, "config.json")).read()
    options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, feature_cache=True)
    with pytest.raises(ValueError, match=r"holds a checkpoint of another config: differs in learning_rate; "
                                         r"use another --model_dir"):
        loop.train(config.replace(learning_rate=0.5), options)
    with pytest.raises(ValueError, match="differs in full_scene"):
        loop.train(config, loop.RunOptions(data_dir=data_dir, model_dir=model_dir, feature_cache=True,
                                           full_scene=True))
    assert open(os.path.join(model_dir, "config.json")).read() == before


@pytest.mark.slow
def test_cosine_schedule_decays_to_zero_over_the_run(feature_run, tmp_path):
    """lr_schedule=cosine: the rate logged after epoch e of E is lr·½(1 + cos(π·e/E)), 0 after the last;
    the schedule is recorded in config.json, and make_optimizer needs the steps per epoch for it."""
    config, data_dir, _, _ = feature_run
    config = config.replace(epochs=2, lr_schedule="cosine")
    model_dir = str(tmp_path / "cosine")
    loop.train(config, loop.RunOptions(data_dir=data_dir, model_dir=model_dir, feature_cache=True))
    rates = read_scalars(model_dir, "train/learning_rate")
    assert rates[0] == pytest.approx(config.learning_rate / 2, rel=1e-5)
    assert rates[1] == pytest.approx(0.0, abs=1e-9)
    with open(os.path.join(model_dir, "config.json")) as f:
        assert Config.from_dict(json.load(f)).lr_schedule == "cosine"
    with pytest.raises(ValueError, match="lr_schedule cosine needs the steps per epoch"):
        make_optimizer(config)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(feature_run, tmp_path, monkeypatch):
    """Resume the finished 3-epoch run to 4 epochs with a loss that is NaN: stop at epoch 4 step 1."""
    config, data_dir, model_dir, _ = feature_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(model_dir, run_dir, ignore=shutil.ignore_patterns(".lock"))
    last = open(os.path.join(run_dir, "last.weights.h5"), "rb").read()
    results = open(os.path.join(run_dir, "results.json")).read()
    monkeypatch.setattr(loop, "triplet_hinge", lambda d_pos, d_neg, margin: d_pos * float("nan"))
    options = loop.RunOptions(data_dir=data_dir, model_dir=run_dir, feature_cache=True)
    with pytest.raises(loop.TrainingDiverged, match=r"loss is nan at epoch 4 step 1.*checkpoint of epoch 3"):
        loop.train(config.replace(epochs=4), options)
    assert tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")).endswith("ckpt-3")
    assert open(os.path.join(run_dir, "last.weights.h5"), "rb").read() == last
    assert open(os.path.join(run_dir, "results.json")).read() == results


@pytest.mark.slow
def test_image_path_with_full_scenes_trains_and_records_it(synthetic_data, tmp_path):
    """The default (no feature cache) path, trained on uncropped scenes: one epoch of floor(train pairs
    / 8) full steps, recorded as a full_scene run, its test AUC the one evaluate gives on cropped scenes."""
    config, data_dir = synthetic_data
    config = config.replace(epochs=1)
    model_dir = str(tmp_path / "images")
    results = loop.train(config, loop.RunOptions(data_dir=data_dir, model_dir=model_dir, full_scene=True))
    assert results["full_scene"] is True and results["feature_cache"] is False
    assert results["trained_on"] == "full" and results["scored_on"] == "cropped"
    assert results["epochs_run"] == 1 and results["best_epoch"] == 1
    scored = evaluate.evaluate_model(model_dir, data_dir, out=str(tmp_path / "eval.json"))
    assert scored["trained_on"] == "full" and scored["scored_on"] == "cropped"
    assert scored["auc"] == pytest.approx(results["test_auc"], abs=1e-9)
    with open(os.path.join(model_dir, "train_options.json")) as f:
        recorded = json.load(f)
    assert recorded == {"feature_cache": False, "full_scene": True, "jit_compile": False,
                        "backbone_precision": "float32", "dataset": {
        "fingerprint": dataset_fingerprint(data_dir), "data_dir": os.path.abspath(data_dir)},
        "schedule": {"steps_per_execution": 1, "strategy": "auto"}}
    tags = _events(model_dir)
    loss = float(tags["train/loss"][0][1])
    assert 0.0 < loss < 1.0  # hinge with margin 0.2 on distances in [0, 4], mostly near the margin
    assert os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-1.index"))


@pytest.mark.slow
def test_feature_cache_full_scene_run_is_scored_on_cropped_scenes(synthetic_data, feature_run, tmp_path):
    """train --feature_cache --full_scene: finishes (attention examples included); its val and test AUC
    equal evaluate's on cropped scenes, also when evaluate reads the cropped run's cache instead of the
    full-scene one (so the full-scene cache's val/test scenes are the cropped ones)."""
    config, data_dir = synthetic_data
    cropped_cache = default_cache_dir(config, data_dir)
    assert os.path.isdir(cropped_cache)  # built by feature_run
    model_dir = str(tmp_path / "full")
    options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, feature_cache=True, full_scene=True)
    results = loop.train(config.replace(epochs=1), options)
    assert results["trained_on"] == "full" and results["scored_on"] == "cropped"
    assert [step for step, _ in _events(model_dir)["val/attention"]] == [1]
    out = str(tmp_path / "eval.json")
    for split, key in (("val", "val_auc"), ("test", "test_auc")):
        scored = evaluate.evaluate_model(model_dir, data_dir, split=split, out=out)
        assert scored["scored_on"] == "cropped" and scored["trained_on"] == "full"
        assert scored["auc"] == pytest.approx(results[key], abs=1e-9), split
        via_cropped_cache = evaluate.evaluate_model(model_dir, data_dir, split=split, feature_cache_dir=cropped_cache,
                                                    out=out)
        assert via_cropped_cache["auc"] == pytest.approx(results[key], abs=1e-9), split
    with pytest.raises(ValueError, match="needs the image path"):
        evaluate.evaluate_model(model_dir, data_dir, full_scene=True, feature_cache=True, out=out)
