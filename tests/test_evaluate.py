"""evaluate CLI end to end on a smoke model_dir, the identity with embed's AUC, and bad inputs."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ctl_keras.evaluation import embed
from ctl_keras.evaluation import model_eval as evaluate


@pytest.fixture(scope="module")
def model_dir(untrained_model, tmp_path_factory):
    """A copy of the untrained smoke model (the CLI writes eval.json into it)."""
    out = tmp_path_factory.mktemp("eval_model") / "model"
    shutil.copytree(untrained_model[2], out)
    return str(out)


@pytest.mark.slow
def test_cli_writes_eval_json_and_table(synthetic_data, model_dir):
    config, data_dir = synthetic_data
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.evaluate", f"--model_dir={model_dir}",
                           f"--data_dir={data_dir}"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ALL" in proc.stdout and "Top-10" in proc.stdout and "ALL products of the asked category" in proc.stdout
    with open(os.path.join(model_dir, "eval.json")) as f:
        result = json.load(f)
    assert len(result["topk"]) == config.topk_max and result["topk"][-1] >= result["topk"][0]
    # No results.json: what the model was trained on is unknown; the score is on cropped scenes.
    assert result["trained_on"] == "unknown" and result["scored_on"] == "cropped" and "note" not in result
    assert "(cropped scenes)" in proc.stdout
    # The pictures beside the JSON, named on stdout; the embedding's progress goes to the log (a pipe):
    # a line per ~10 s and the final one, never a bar.
    for name in ("eval_topk.png", "eval_categories.png"):
        with open(os.path.join(model_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert name in proc.stdout
    progress = [line for line in proc.stderr.splitlines() if "evaluate: embed test: " in line]
    assert progress and "100%" in progress[-1] and "image/s" in progress[-1] and "\r" not in proc.stderr
    assert set(result["per_category"]) <= set(config.categories)
    # The questions' AUC must equal the one training validates with (embed.validation_auc).
    _, models = __import__("ctl_keras.model.run_dir", fromlist=["x"]).load_trained(model_dir)
    want = embed.validation_auc(models, config, data_dir, "test")
    assert result["auc"] == pytest.approx(want, abs=1e-9)
    # Top-K over a category's products: the last K covers every candidate when K >= the category size.
    # (The seeded fixture has at most topk_max test products per category, so K = the largest covers all.)
    sizes = [c["num_candidates"] for c in result["per_category"].values()]
    assert max(sizes) <= config.topk_max
    assert result["topk"][max(sizes) - 1] == 1.0


@pytest.mark.slow
def test_full_scene_is_an_explicit_image_path_analysis(synthetic_data, model_dir, tmp_path):
    """A model trained on full scenes is scored on cropped ones by default; --full_scene scores the
    uncropped scenes (image path), says so, and is refused with a feature cache."""
    config, data_dir = synthetic_data
    trained = tmp_path / "trained_full"
    shutil.copytree(model_dir, trained)
    (trained / "results.json").write_text(json.dumps({"feature_cache": False, "full_scene": True, "trained_on": "full"}))
    out = str(tmp_path / "eval.json")
    cropped = evaluate.evaluate_model(str(trained), data_dir, out=out)
    assert cropped["trained_on"] == "full" and cropped["scored_on"] == "cropped"
    full = evaluate.evaluate_model(str(trained), data_dir, full_scene=True, out=out)
    assert full["trained_on"] == "full" and full["scored_on"] == "full" and "NOT the CTL task" in full["note"]
    _, models = __import__("ctl_keras.model.run_dir", fromlist=["x"]).load_trained(str(trained))
    assert full["auc"] == pytest.approx(embed.validation_auc(models, config, data_dir, "test", full_scene=True),
                                        abs=1e-9)
    assert cropped["auc"] == pytest.approx(embed.validation_auc(models, config, data_dir, "test"), abs=1e-9)
    with pytest.raises(ValueError, match="needs the image path"):
        evaluate.evaluate_model(str(trained), data_dir, full_scene=True, feature_cache=True, out=out)


@pytest.mark.slow
def test_model_dir_without_weights_is_a_clear_error(synthetic_data, tmp_path):
    config, data_dir = synthetic_data
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.raises(FileNotFoundError, match="best.weights.h5 is missing"):
        evaluate.evaluate_model(str(tmp_path), data_dir)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.evaluate", f"--model_dir={tmp_path / 'nowhere'}",
                           f"--data_dir={data_dir}"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("evaluate: error:")


def test_default_data_dir_is_the_one_training_recorded(model_dir, tmp_path):
    """Without --data_dir, evaluate reads the dataset results.json names (not tf_records/<dataset>):
    pointed at a missing directory, the error names that directory."""
    trained = tmp_path / "trained"
    shutil.copytree(model_dir, trained)
    recorded = tmp_path / "built_elsewhere"
    (trained / "results.json").write_text(json.dumps({"data_dir": str(recorded), "trained_on": "cropped"}))
    with pytest.raises(FileNotFoundError, match=f"no manifest.json in {recorded}"):
        evaluate.evaluate_model(str(trained), out=str(tmp_path / "eval.json"))


def test_empty_test_split_is_a_clear_error(synthetic_data, model_dir, tmp_path):
    """A dataset whose manifest says 0 test pairs is refused before anything is embedded."""
    _, data_dir = synthetic_data
    empty = tmp_path / "data"
    shutil.copytree(data_dir, empty)
    manifest = json.loads((empty / "manifest.json").read_text())
    manifest["splits"]["test"].update(pairs=0, questions=0)
    (empty / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="test split .* is empty"):
        evaluate.evaluate_model(model_dir, str(empty))
    assert not np.any([p.name == "eval.json" for p in empty.iterdir()])


def test_results_of_an_earlier_version_are_refused_in_one_line():
    """results.json without trained_on (before it was recorded) is not guessed from other keys."""
    from ctl_keras.evaluation.model_eval import _trained_on

    assert _trained_on({"trained_on": "full"}, "m") == "full"
    assert _trained_on({}, "m") == "unknown"  # no results.json: a model_dir not written by train
    with pytest.raises(ValueError, match=r"m/results.json was written by an earlier ctl_keras \(no trained_on\)"):
        _trained_on({"full_scene": False, "val_auc": 0.5}, "m")
