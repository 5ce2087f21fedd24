"""The training CLI: flags -> Config, and one-line errors for bad input."""

import os
import subprocess
import sys
import types

import pytest

from ctl_keras.config import Config, get_config
from ctl_keras.train import _OVERRIDES, config_from_flags


def _flags(**values):
    base = {name: None for name in _OVERRIDES}
    base.update(dataset="synthetic", smoke=False)
    base.update(values)
    return types.SimpleNamespace(**base)


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ctl_keras.train", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_flags_override_the_dataset_config_and_round_trip():
    """Unset flags keep get_config's values; set ones replace them; image 112 resizes to 128 (8/7)."""
    config = config_from_flags(_flags(dataset="home", variant="global", epochs=7, margin=0.3,
                                      learning_rate=0.01, image_size=112, seed=3))
    expected = get_config("home", variant="global", epochs=7, margin=0.3, learning_rate=0.01,
                          image_size=112, resize_size=128, seed=3)
    assert config == expected
    assert config.batch_size == get_config("home").batch_size == 16
    assert config_from_flags(_flags(smoke=True, num_views=3)) == get_config("synthetic", smoke=True, num_views=3)
    assert Config.from_dict(config.to_dict()) == config
    assert config_from_flags(_flags()) == get_config("synthetic")


def test_bad_numbers_are_refused():
    with pytest.raises(ValueError, match="--epochs must be at least 1, got 0"):
        config_from_flags(_flags(epochs=0))
    with pytest.raises(ValueError, match="image_size 100 gives a 6x6 conv4 map"):
        config_from_flags(_flags(image_size=100))


@pytest.mark.parametrize("flag, value", [("dataset", "fashion3"), ("variant", "localish"),
                                         ("strategy", "tpu")])
def test_unknown_enum_flag_is_one_line_error(flag, value):
    """Flag parsing fails before TensorFlow is imported: exit 1, the flag named, no traceback."""
    done = _cli(f"--{flag}={value}", timeout=60)
    assert done.returncode == 1
    assert f"flag --{flag}={value}: value should be one of" in done.stderr
    assert "Traceback" not in done.stderr


def test_data_dir_without_manifest_says_how_to_build(tmp_path):
    """A non-synthetic dataset is never built implicitly: the error names the build command."""
    data_dir, model_dir = tmp_path / "empty", tmp_path / "model"
    data_dir.mkdir()
    done = _cli("--dataset=home", "--smoke", f"--data_dir={data_dir}", f"--model_dir={model_dir}")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert f"no manifest.json in {data_dir}" in errors[0]
    assert f"python -m ctl_keras.build_dataset --dataset=home --out={data_dir}" in errors[0]
    assert "Traceback" not in done.stderr
    assert os.listdir(data_dir) == [] and not os.path.exists(model_dir)


def test_truncated_shard_is_one_line_error(synthetic_data, tmp_path):
    """A damaged TFRecord fails inside TF's iterator; the CLI still prints one line and no traceback."""
    import glob
    import shutil

    _, data_dir = synthetic_data
    damaged = tmp_path / "data"
    shutil.copytree(data_dir, damaged, ignore=shutil.ignore_patterns("raw", "feature_cache"))
    for shard in glob.glob(str(damaged / "pairs-train-*.tfrecord")):
        with open(shard, "r+b") as f:
            f.truncate(os.path.getsize(shard) // 2)
    done = _cli("--smoke", f"--data_dir={damaged}", f"--model_dir={tmp_path / 'model'}", "--epochs=1")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "DataLossError: truncated record" in errors[0] and "function_node" not in errors[0]
    assert "Traceback" not in done.stderr
