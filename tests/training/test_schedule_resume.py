"""A resume may change the schedule settings (epochs under a constant rate, eval_every, topk_max,
steps_per_execution...), recorded in config_changes.json; what defines the model, the data or the
optimizer's path must still match."""

import json
import os

import numpy as np
import pytest
from absl import logging as absl_logging

from ctl_keras.config import get_config
from ctl_keras.training import loop
from ctl_keras.training.checkpointing import CHANGES_FILE, check_or_write_config
from tests.helpers.run_files import weight_arrays

SCHEDULE = {"steps_per_execution": 1, "strategy": "auto"}
OPTIONS = {"feature_cache": False, "jit_compile": False, "dataset": {"fingerprint": "aaaa", "data_dir": "/data/one"},
           "schedule": SCHEDULE}


def _fake_checkpoint(model_dir, epoch):
    os.makedirs(os.path.join(model_dir, "checkpoints"), exist_ok=True)
    open(os.path.join(model_dir, "checkpoints", f"ckpt-{epoch}.index"), "w").close()


def _changes(model_dir):
    with open(os.path.join(model_dir, CHANGES_FILE)) as f:
        return [entry["changed"] | {"after_epoch": entry["after_epoch"]} for entry in json.load(f)]


def test_schedule_changes_are_accepted_logged_and_recorded(tmp_path, caplog):
    model_dir = str(tmp_path)
    config = get_config("synthetic", smoke=True)  # epochs 2, eval_every 1, topk_max 10, constant rate
    check_or_write_config(model_dir, config, OPTIONS)
    _fake_checkpoint(model_dir, 2)
    assert check_or_write_config(model_dir, config, OPTIONS) is True
    assert not os.path.exists(os.path.join(model_dir, CHANGES_FILE))  # the same command changes nothing

    longer = config.replace(epochs=6, eval_every=5)
    verbosity = absl_logging.get_verbosity()  # an earlier test may have left absl at WARNING
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with caplog.at_level("INFO"):
            assert check_or_write_config(model_dir, longer, {**OPTIONS, "schedule": {**SCHEDULE, "steps_per_execution": 4}})
    finally:
        absl_logging.set_verbosity(verbosity)
    assert f"resuming {model_dir} after epoch 2 with changed schedule settings: epochs 2 -> 6, eval_every 1 -> 5, " \
           "steps_per_execution 1 -> 4" in caplog.text
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["eval_every"] == 5
    _fake_checkpoint(model_dir, 4)
    check_or_write_config(model_dir, longer.replace(topk_max=20), OPTIONS)
    assert _changes(model_dir) == [
        {"epochs": [2, 6], "eval_every": [1, 5], "steps_per_execution": [1, 4], "after_epoch": 2},
        {"topk_max": [10, 20], "steps_per_execution": [4, 1], "after_epoch": 4}]


@pytest.mark.parametrize("field, value", [("learning_rate", 0.5), ("batch_size", 4), ("seed", 1),
                                          ("shuffle_buffer", 8), ("num_views", 3), ("lr_schedule", "cosine")])
def test_what_changes_the_optimizers_path_still_refuses(tmp_path, field, value):
    config = get_config("synthetic", smoke=True)
    check_or_write_config(str(tmp_path), config, OPTIONS)
    _fake_checkpoint(str(tmp_path), 1)
    with pytest.raises(ValueError, match=rf"differs in {field}; use another --model_dir"):
        check_or_write_config(str(tmp_path), config.replace(**{field: value}), OPTIONS)
    assert not os.path.exists(tmp_path / CHANGES_FILE)


def test_under_a_cosine_rate_epochs_is_part_of_the_run(tmp_path):
    """Cosine decays to 0 over config.epochs: another --epochs would change the rate of every later step."""
    config = get_config("synthetic", smoke=True, lr_schedule="cosine")
    check_or_write_config(str(tmp_path), config, OPTIONS)
    _fake_checkpoint(str(tmp_path), 1)
    with pytest.raises(ValueError, match=r"differs in epochs \(under lr_schedule cosine, epochs sets the decay\)"):
        check_or_write_config(str(tmp_path), config.replace(epochs=4), OPTIONS)
    assert check_or_write_config(str(tmp_path), config.replace(eval_every=2), OPTIONS) is True


def test_xla_is_part_of_the_run_and_an_unrecorded_option_is_recorded_from_now_on(tmp_path):
    """XLA draws other dropout masks for the same seeds, so --jit_compile must match; a run that did not
    record it (an earlier ctl_keras) resumes and records it."""
    config = get_config("synthetic", smoke=True)
    check_or_write_config(str(tmp_path), config, {k: v for k, v in OPTIONS.items() if k != "jit_compile"})
    _fake_checkpoint(str(tmp_path), 1)
    assert check_or_write_config(str(tmp_path), config, OPTIONS) is True
    with pytest.raises(ValueError, match=r"differs in jit_compile; use another --model_dir"):
        check_or_write_config(str(tmp_path), config, {**OPTIONS, "jit_compile": True})


def test_a_damaged_changes_file_does_not_stop_the_resume(tmp_path):
    config = get_config("synthetic", smoke=True)
    check_or_write_config(str(tmp_path), config, OPTIONS)
    _fake_checkpoint(str(tmp_path), 1)
    (tmp_path / CHANGES_FILE).write_text("[{half")
    assert check_or_write_config(str(tmp_path), config.replace(eval_every=2), OPTIONS) is True
    assert _changes(str(tmp_path)) == [{"eval_every": [1, 2], "after_epoch": 1}]
    assert (tmp_path / (CHANGES_FILE + ".damaged")).read_text() == "[{half"


@pytest.mark.slow
def test_resume_with_another_schedule_ends_with_the_uninterrupted_weights(feature_run, tmp_path):
    """2 epochs validating every 2, resumed to 3 validating every epoch == the straight 3-epoch run that
    validated every epoch (feature_run): validation draws nothing from the training's random streams."""
    config, data_dir, straight, _ = feature_run
    assert (config.epochs, config.eval_every, config.lr_schedule) == (3, 1, "constant")
    model_dir = str(tmp_path / "rescheduled")
    options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, feature_cache=True)
    loop.train(config.replace(epochs=2, eval_every=2), options)
    results = loop.train(config, options)
    assert results["epochs_run"] == 3
    assert _changes(model_dir) == [{"epochs": [2, 3], "eval_every": [2, 1], "after_epoch": 2}]
    a, b = weight_arrays(os.path.join(straight, "last.weights.h5")), weight_arrays(os.path.join(model_dir, "last.weights.h5"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
