"""a model_dir records its dataset's fingerprint; resume and evaluate's default refuse another."""

import json
import os
import shutil

import pytest

from ctl_keras.data.fingerprint import dataset_fingerprint
from ctl_keras.training import loop


@pytest.fixture
def other_build(feature_run, tmp_path):
    """A copy of the run's dataset whose test split holds other questions (as after a rebuild that dropped
    a few images), so its counts-only manifest sections could look alike."""
    _, data_dir, _, _ = feature_run
    other = tmp_path / "rebuilt"
    shutil.copytree(data_dir, other, ignore=shutil.ignore_patterns("raw", "feature_cache"))
    questions = json.loads((other / "questions-test.json").read_text())
    (other / "questions-test.json").write_text(json.dumps(questions[:-1]))
    return str(other)


@pytest.mark.slow
def test_fingerprint_ignores_location_but_not_content(feature_run, other_build, tmp_path):
    _, data_dir, _, _ = feature_run
    moved = tmp_path / "moved"
    shutil.copytree(data_dir, moved, ignore=shutil.ignore_patterns("raw", "feature_cache"))
    assert dataset_fingerprint(moved) == dataset_fingerprint(data_dir) != dataset_fingerprint(other_build)


def test_resume_on_another_dataset_is_refused_naming_both(feature_run, other_build, tmp_path):
    config, data_dir, model_dir, _ = feature_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(model_dir, run_dir, ignore=shutil.ignore_patterns(".lock"))
    before = open(os.path.join(run_dir, "train_options.json")).read()
    with pytest.raises(ValueError, match=rf"trained on dataset {dataset_fingerprint(data_dir)} \({data_dir}\), but "
                                         rf"--data_dir {other_build} holds dataset {dataset_fingerprint(other_build)}"):
        loop.train(config, loop.RunOptions(data_dir=other_build, model_dir=run_dir, feature_cache=True))
    assert open(os.path.join(run_dir, "train_options.json")).read() == before


def test_evaluate_default_data_dir_of_another_dataset_is_refused(feature_run, other_build, tmp_path):
    """results.json's data_dir now holds another build: evaluate refuses instead of scoring on it."""
    from ctl_keras.evaluation.model_eval import evaluate_model

    _, data_dir, model_dir, results = feature_run
    assert results["data_fingerprint"] == dataset_fingerprint(data_dir)
    run_dir = tmp_path / "run"
    shutil.copytree(model_dir, run_dir, ignore=shutil.ignore_patterns(".lock"))
    (run_dir / "results.json").write_text(json.dumps({**results, "data_dir": other_build}))
    with pytest.raises(ValueError, match=rf"trained on dataset {results['data_fingerprint']}, but its recorded "
                                         rf"data_dir {other_build} now holds dataset"):
        evaluate_model(str(run_dir))
    assert not (run_dir / "eval.json").exists()
