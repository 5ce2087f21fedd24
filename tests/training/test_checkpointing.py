"""model_dir lock, config.json checks, atomic writes, and resumable state including dropout seeds."""

import json
import os

import keras
import numpy as np
import pytest

from ctl_keras.config import get_config
from ctl_keras.atomic import atomic_write, write_json
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


def test_config_check_allows_more_epochs_and_refuses_other_settings(tmp_path):
    model_dir = str(tmp_path)
    config = get_config("synthetic", smoke=True)
    assert check_or_write_config(model_dir, config, {"feature_cache": False}) is False
    assert check_or_write_config(model_dir, config.replace(epochs=9), {"feature_cache": False}) is True
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["epochs"] == 9
    with pytest.raises(ValueError, match="differs in embedding_dim, margin; use another --model_dir"):
        check_or_write_config(model_dir, config.replace(margin=0.5, embedding_dim=8), {"feature_cache": False})
    with pytest.raises(ValueError, match="differs in feature_cache"):
        check_or_write_config(model_dir, config, {"feature_cache": True})


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
