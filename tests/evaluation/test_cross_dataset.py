"""evaluate refuses data that is not the model's training data unless --cross_dataset, and then says
how many of the split's scenes the model trained on."""

import json
import shutil

import pytest

from ctl_keras.evaluation import model_eval as evaluate
from ctl_keras.data import pipeline
from ctl_keras.data.fingerprint import dataset_fingerprint
from ctl_keras.evaluation import seen_scenes

pytestmark = pytest.mark.slow  # builds a second dataset and evaluates four times


@pytest.fixture(scope="module")
def resplit(synthetic_data, tmp_path_factory):
    """The same synthetic images rebuilt with another split seed: many test scenes were train scenes."""
    from ctl_keras.builder import build as build_dataset
    from ctl_keras.data import dataset_dir

    config, data_dir = synthetic_data
    # The generator's arguments as the session's build recorded them (a `from conftest import` picks
    # whichever conftest module the collection loaded last, e.g. tests/training/conftest.py).
    kwargs = dataset_dir.read_manifest(data_dir)["flags"]["synthetic_kwargs"]
    out = tmp_path_factory.mktemp("resplit")
    build_dataset.build(config.replace(seed=1), out, synthetic_kwargs=dict(kwargs), workers=1, log=lambda m: None)
    return str(out)


@pytest.fixture
def trained(untrained_model, synthetic_data, tmp_path):
    """The smoke model with the records `train` leaves: results.json (fingerprint) + train_scenes.txt."""
    _, data_dir = synthetic_data
    model_dir = tmp_path / "model"
    shutil.copytree(untrained_model[2], model_dir)
    (model_dir / "results.json").write_text(json.dumps(
        {"data_dir": data_dir, "data_fingerprint": dataset_fingerprint(data_dir), "trained_on": "cropped"}))
    seen_scenes.write(str(model_dir), data_dir)
    return str(model_dir)


def test_other_data_is_refused_naming_both_datasets(trained, synthetic_data, resplit, tmp_path):
    assert dataset_fingerprint(resplit) != dataset_fingerprint(synthetic_data[1])
    with pytest.raises(ValueError, match=rf"trained on dataset {dataset_fingerprint(synthetic_data[1])}.*"
                                         rf"holds dataset {dataset_fingerprint(resplit)}.*--cross_dataset"):
        evaluate.evaluate_model(trained, resplit, out=str(tmp_path / "eval.json"))
    assert not (tmp_path / "eval.json").exists()


def test_cross_dataset_counts_test_scenes_seen_in_training(trained, synthetic_data, resplit, tmp_path):
    expected = pipeline.split_scene_ids(resplit, "test") & pipeline.split_scene_ids(synthetic_data[1], "train")
    assert expected  # the re-split moved training scenes into test: the case to report
    result = evaluate.evaluate_model(trained, resplit, out=str(tmp_path / "eval.json"), cross_dataset=True)
    info = result["cross_dataset"]
    assert info["scenes_seen_in_training"] == len(expected)
    assert info["scenes"] == len(pipeline.split_scene_ids(resplit, "test"))
    assert f"{len(expected)} of the {info['scenes']} test scenes" in seen_scenes.describe(info, "test")
    # Without train_scenes.txt (a run trained before it existed) the recorded data_dir still answers.
    (tmp_path / "model" / seen_scenes.SCENES_FILE).unlink()
    again = evaluate.evaluate_model(trained, resplit, out=str(tmp_path / "eval2.json"), cross_dataset=True)
    assert again["cross_dataset"]["scenes_seen_in_training"] == len(expected)


def test_the_models_own_data_needs_no_flag(trained, synthetic_data, tmp_path):
    result = evaluate.evaluate_model(trained, synthetic_data[1], out=str(tmp_path / "eval.json"))
    assert "cross_dataset" not in result


def test_cli_refuses_then_reports_the_overlap(trained, synthetic_data, resplit, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    base = [sys.executable, "-m", "ctl_keras.evaluate", f"--model_dir={trained}", f"--data_dir={resplit}",
            f"--out={tmp_path / 'eval.json'}"]
    refused = subprocess.run(base, capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert [line for line in refused.stderr.splitlines() if "error:" in line][0].endswith(
        "pass --cross_dataset to evaluate on it anyway")
    crossed = subprocess.run(base + ["--cross_dataset"], capture_output=True, text=True, env=env, timeout=600)
    assert crossed.returncode == 0, crossed.stderr[-2000:]
    seen = len(pipeline.split_scene_ids(resplit, "test") & pipeline.split_scene_ids(synthetic_data[1], "train"))
    assert "CROSS-DATASET" in crossed.stdout and f" {seen} of the " in crossed.stdout
