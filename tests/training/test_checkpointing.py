"""model_dir lock, config.json checks, atomic writes, and resumable state including dropout seeds."""

import json
import os

import keras
import numpy as np
import pytest

from ctl_keras.config import get_config
from ctl_keras.utils.atomic import atomic_write, write_json
from ctl_keras.training.checkpointing import ModelDirLock, TrainState, check_or_write_config


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    model_dir = str(tmp_path / "m")
    with ModelDirLock(model_dir):
        with pytest.raises(RuntimeError, match=rf"model_dir {model_dir} is in use by another training run "
                                               rf"\(pid {os.getpid()}\)"):
            with ModelDirLock(model_dir):
                pass
    with ModelDirLock(model_dir):  # released on exit
        pass

OPTIONS = {"feature_cache": False, "dataset": {"fingerprint": "aaaa", "data_dir": "/data/one"}}


def test_config_check_allows_more_epochs_and_refuses_other_settings(tmp_path):
    model_dir = str(tmp_path)
    config = get_config("synthetic", smoke=True)
    assert check_or_write_config(model_dir, config, OPTIONS) is False
    _fake_checkpoint(tmp_path)  # a model_dir with only config.json is fresh (see the test below)
    assert check_or_write_config(model_dir, config.replace(epochs=9), OPTIONS) is True
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["epochs"] == 9
    with pytest.raises(ValueError, match="differs in embedding_dim, margin; use another --model_dir"):
        check_or_write_config(model_dir, config.replace(margin=0.5, embedding_dim=8), OPTIONS)
    with pytest.raises(ValueError, match="differs in feature_cache"):
        check_or_write_config(model_dir, config, {**OPTIONS, "feature_cache": True})


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "x.json")
    write_json(path, {"a": 1})

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    with open(path) as f:
        assert json.load(f) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def _fake_checkpoint(model_dir):
    os.makedirs(os.path.join(model_dir, "checkpoints"), exist_ok=True)
    open(os.path.join(model_dir, "checkpoints", "ckpt-1.index"), "w").close()


def test_config_json_without_a_checkpoint_is_a_fresh_model_dir(tmp_path):
    """a first run that failed before its first epoch left config.json; the corrected rerun
    with another config is accepted, but not once a checkpoint or trained weights exist."""
    config = get_config("synthetic", smoke=True)
    assert check_or_write_config(str(tmp_path), config.replace(embedding_dim=4), {}) is False
    assert check_or_write_config(str(tmp_path), config, {}) is False
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["embedding_dim"] == config.embedding_dim
    (tmp_path / "last.weights.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="differs in embedding_dim"):
        check_or_write_config(str(tmp_path), config.replace(embedding_dim=8), {})


def test_another_dataset_is_refused_naming_both(tmp_path):
    """train_options.json records the dataset fingerprint; a resume on another one is refused."""
    config = get_config("synthetic", smoke=True)
    first = {"feature_cache": False, "dataset": {"fingerprint": "aaaa", "data_dir": "/data/one"}}
    check_or_write_config(str(tmp_path), config, first)
    _fake_checkpoint(tmp_path)
    assert check_or_write_config(str(tmp_path), config, {**first, "dataset": {"fingerprint": "aaaa",
                                                                              "data_dir": "/moved"}}) is True
    other = {**first, "dataset": {"fingerprint": "bbbb", "data_dir": "/data/two"}}
    with pytest.raises(ValueError, match=r"trained on dataset aaaa \(/moved\), but --data_dir /data/two holds "
                                         r"dataset bbbb; resume with --data_dir=/moved"):
        check_or_write_config(str(tmp_path), config, other)


@pytest.mark.parametrize("options_file", [None, {"feature_cache": False}])
def test_a_run_of_an_earlier_version_is_refused_in_one_line(tmp_path, options_file):
    """No compatibility path: a run without train_options.json, or whose options record no dataset
    fingerprint (written by an earlier version), is not resumed; the error says what to do."""
    config = get_config("synthetic", smoke=True)
    write_json(str(tmp_path / "config.json"), config.to_dict())
    if options_file is not None:
        write_json(str(tmp_path / "train_options.json"), options_file)
    _fake_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"holds a run of an earlier ctl_keras \(.*\); delete it or train into "
                                         r"a new --model_dir"):
        check_or_write_config(str(tmp_path), config, OPTIONS)


def _model_and_optimizer():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(6)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _step(model, optimizer, x):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True) ** 2)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))


def test_train_state_restores_weights_optimizer_and_dropout_seeds(tmp_path):
    """Two steps, save, one more step == restore in a fresh model, one more step (same dropout mask)."""
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    model, optimizer = _model_and_optimizer()
    state = TrainState(str(tmp_path), model.variables, optimizer)
    _step(model, optimizer, x)
    _step(model, optimizer, x)
    state.best_auc.assign(0.75)
    state.save(2)
    _step(model, optimizer, x)

    fresh, fresh_optimizer = _model_and_optimizer()
    restored = TrainState(str(tmp_path), fresh.variables, fresh_optimizer)
    assert restored.restore() == 2 and float(restored.best_auc.numpy()) == 0.75
    assert int(fresh_optimizer.iterations.numpy()) == 2
    _step(fresh, fresh_optimizer, x)
    for a, b in zip(model.variables, fresh.variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6,
                                   err_msg=a.path)
    seeds = [v for v in model.variables if "seed" in v.path]
    assert seeds, "the dropout seed state is part of the checkpointed variables"


def test_restore_of_a_checkpoint_from_another_model_is_a_clear_error(tmp_path):
    model, optimizer = _model_and_optimizer()
    TrainState(str(tmp_path), model.variables, optimizer).save(1)
    keras.utils.set_random_seed(0)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other_optimizer = keras.optimizers.Adam(0.1)
    other_optimizer.build(other.trainable_variables)
    with pytest.raises(ValueError, match="does not match this model"):
        TrainState(str(tmp_path), other.variables, other_optimizer).restore()


def _saved_twice(tmp_path):
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    model, optimizer = _model_and_optimizer()
    state = TrainState(str(tmp_path), model.variables, optimizer)
    _step(model, optimizer, x)
    state.save(1)
    _step(model, optimizer, x)
    state.save(2)
    return str(tmp_path / "checkpoints")


def test_damaged_checkpoint_index_stops_instead_of_restarting(tmp_path):
    """TF ignores an unparsable checkpoints/checkpoint file (latest = None), which used to
    restart training at epoch 1 over a finished run. Now: one error naming the file and how to start over."""
    directory = _saved_twice(tmp_path)
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write("garbage {{")
    fresh, fresh_optimizer = _model_and_optimizer()
    with pytest.raises(ValueError, match=rf"{directory}/checkpoint is missing or damaged, so the 2 checkpoint\(s\)"
                                         rf".*to start over, remove {tmp_path} or pass another --model_dir"):
        TrainState(str(tmp_path), fresh.variables, fresh_optimizer).restore()


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    """a truncated ckpt-2.data raised IndexError; now epoch 1 is restored with a warning,
    and when every checkpoint is damaged the error names them."""
    directory = _saved_twice(tmp_path)
    data = os.path.join(directory, "ckpt-2.data-00000-of-00001")
    os.truncate(data, os.path.getsize(data) // 2)
    fresh, fresh_optimizer = _model_and_optimizer()
    with caplog.at_level("WARNING"):
        assert TrainState(str(tmp_path), fresh.variables, fresh_optimizer).restore() == 1
    assert "ckpt-2: IndexError" in caplog.text and "resuming from the previous intact one" in caplog.text
    assert int(fresh_optimizer.iterations.numpy()) == 1
    data = os.path.join(directory, "ckpt-1.data-00000-of-00001")
    os.truncate(data, os.path.getsize(data) // 2)
    with pytest.raises(ValueError, match=r"no checkpoint in .* can be restored \(ckpt-2: IndexError.*; ckpt-1: "):
        other, other_optimizer = _model_and_optimizer()
        TrainState(str(tmp_path), other.variables, other_optimizer).restore()


def test_restore_from_a_relative_model_dir(tmp_path, monkeypatch):
    """A relative model_dir (the default runs/<name>-<variant>, the demo's runs/demo) resumes: TF's
    checkpoint state already prefixes its entries with the directory, which must not be joined twice."""
    monkeypatch.chdir(tmp_path)
    _saved_twice(tmp_path / "runs" / "rel")
    fresh, fresh_optimizer = _model_and_optimizer()
    assert TrainState(os.path.join("runs", "rel"), fresh.variables, fresh_optimizer).restore() == 2
    assert int(fresh_optimizer.iterations.numpy()) == 2
