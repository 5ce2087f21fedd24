"""The training CLI: flags -> Config, and one-line errors for bad input."""

import json
import os
import subprocess
import sys
import types

import pytest

from ctl_keras.cli import options as config_flags
from ctl_keras.config import Config, get_config
from ctl_keras.cli.train import config_from_flags as train_config


def _flags(**values):
    base = {name: None for name in config_flags.FIELDS}
    base.update(dataset="synthetic", data_dir="/nonexistent/data", smoke=False)
    base.update(values)
    return types.SimpleNamespace(**base)


def config_from_flags(values):
    return train_config(values)[0]


def _cli(*args, timeout=300, cwd=None, module="ctl_keras.train"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=cwd)


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


def test_flagfile_keeps_a_runs_settings(tmp_path):
    """--flagfile reads the generated Config flags like the command line (a bad value proves it was read)."""
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--smoke\n--epochs=0\n")
    done = _cli(f"--flagfile={flagfile}", timeout=60)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == "train: error: --epochs must be at least 1, got 0"


def test_unknown_dataset_is_one_line_error():
    done = _cli("--dataset=fashion3", timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("train: error: unknown dataset 'fashion3': expected one of")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("flag, value", [("variant", "localish"), ("strategy", "tpu")])
def test_unknown_enum_flag_is_one_line_error(flag, value):
    """Flag parsing fails before TensorFlow is imported: exit 1, the flag named, no traceback."""
    done = _cli(f"--{flag}={value}", timeout=60)
    assert done.returncode == 1
    assert f"flag --{flag}={value}: value should be one of" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_data_dir_without_manifest_says_how_to_build(tmp_path):
    """A non-synthetic dataset is never built implicitly: the error names the build command."""
    data_dir, model_dir = tmp_path / "empty", tmp_path / "model"
    data_dir.mkdir()
    done = _cli("--dataset=home", "--smoke", f"--data_dir={data_dir}", f"--model_dir={model_dir}")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert f"no manifest.json in {data_dir}" in errors[0]
    assert f"ctl build --dataset=home --out={data_dir}" in errors[0]
    assert "Traceback" not in done.stderr
    assert os.listdir(data_dir) == [] and not os.path.exists(model_dir)


@pytest.mark.slow
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


def _error_lines(done):
    return [line for line in done.stderr.splitlines() if line.startswith("train: error:")]


@pytest.mark.parametrize("tf_config, message", [
    (None, "--strategy=multi_worker needs TF_CONFIG"),
    ('{"cluster": {"worker": ["localhost:1"]', "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG task index 2 is not in the cluster: 'worker' has 2 address(es), indices 0..1"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}',
     "TF_CONFIG task type 'chief' is not a job of the cluster (worker)"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     """TF_CONFIG cluster "worker" has an address that is not "host:port": 'localhost'"""),
])
def test_bad_tf_config_is_one_line(tmp_path, tf_config, message):
    """Checked before TensorFlow starts: exit 1, one line naming the problem, nothing written."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    done = subprocess.run([sys.executable, "-m", "ctl_keras.train", "--strategy=multi_worker", "--smoke",
                           f"--model_dir={tmp_path / 'm'}", f"--data_dir={tmp_path / 'd'}"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    errors = _error_lines(done)
    assert len(errors) == 1 and errors[0].startswith(f"train: error: {message}"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not (tmp_path / "m").exists()


def test_read_tf_config_accepts_a_chief_and_names_the_writer():
    from ctl_keras.training.cluster import read_tf_config

    cluster = {"chief": ["c:1"], "worker": ["w0:2", "w1:3"]}
    chief = read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})})
    worker0 = read_tf_config({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})})
    assert chief.is_writer and not worker0.is_writer and chief.num_workers == worker0.num_workers == 3
    alone = read_tf_config({"TF_CONFIG": json.dumps({"cluster": {"worker": ["w0:2", "w1:3"]},
                                                     "task": {"type": "worker", "index": 0}})})
    assert alone.is_writer and alone.num_workers == 2


@pytest.mark.slow
def test_synthetic_is_not_generated_into_a_foreign_directory(tmp_path):
    """an existing, non-empty --data_dir without a manifest is left alone, with the build command."""
    data_dir = tmp_path / "mine"
    data_dir.mkdir()
    (data_dir / "pairs-train-00000-of-00002.tfrecord").write_bytes(b"half a build")
    done = _cli("--dataset=synthetic", "--smoke", f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'model'}",
                timeout=60)
    assert done.returncode == 1
    errors = _error_lines(done)
    assert len(errors) == 1 and f"--data_dir {data_dir} is not empty and has no manifest.json" in errors[0]
    assert f"ctl build --dataset=synthetic --out={data_dir} --smoke" in errors[0]
    assert os.listdir(data_dir) == ["pairs-train-00000-of-00002.tfrecord"] and not (tmp_path / "model").exists()


@pytest.mark.parametrize("flag, message", [
    ("--backbone_weights=/no/such/resnet.h5", "--backbone_weights=/no/such/resnet.h5: no such file"),
    ("--embedding_dim=0", "--embedding_dim must be at least 1, got 0"),
    ("--learning_rate=-1", "--learning_rate must be positive, got -1.0"),
    ("--dropout=1", "--dropout must be in [0, 1), got 1.0"),
])
def test_bad_values_are_refused_before_anything_is_written(synthetic_data, tmp_path, flag, message):
    """the failed first run used to leave config.json, so the corrected rerun was refused."""
    _, data_dir = synthetic_data
    model_dir = tmp_path / "model"
    done = _cli("--smoke", f"--data_dir={data_dir}", f"--model_dir={model_dir}", flag, timeout=60)
    assert done.returncode == 1
    errors = _error_lines(done)
    assert len(errors) == 1 and errors[0].startswith(f"train: error: {message}"), done.stderr[-2000:]
    assert not model_dir.exists()


@pytest.mark.parametrize("make_dir", [False, True], ids=["typo", "empty_dir"])
def test_data_dir_without_a_manifest_is_not_filled_with_synthetic_data(tmp_path, make_dir):
    """A mistyped --data_dir (or the directory of a build that failed) names no dataset: without
    --dataset=synthetic it used to be generated full of synthetic scenes and trained on, exit 0. Now one
    line naming the path; nothing created (no data, no runs/)."""
    if make_dir:
        (tmp_path / "tf_records" / "typo").mkdir(parents=True)
    done = _cli("--data_dir=tf_records/typo", cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    errors = _error_lines(done)
    assert len(errors) == 1 and errors[0].startswith(
        "train: error: --data_dir=tf_records/typo has no manifest.json (not a built dataset)"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(tmp_path)) == (["tf_records"] if make_dir else [])
    assert not make_dir or os.listdir(tmp_path / "tf_records" / "typo") == []


def _resumed(done, model_dir, epoch):
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {model_dir} after epoch {epoch}" in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
def test_relative_model_dir_resumes_and_takes_a_new_schedule(synthetic_data, tmp_path):
    """From a working directory with relative paths (as `make demo` runs): the same command twice (the
    second finds the finished run: it used to fail looking for runs/rel/checkpoints/runs/rel/checkpoints/
    ckpt-1), then with more epochs and another --eval_every (recorded, not refused); evaluate reads it."""
    _, data_dir = synthetic_data
    os.symlink(data_dir, tmp_path / "data")
    command = ("--smoke", "--data_dir=data", "--model_dir=runs/rel", "--epochs=1")  # the feature cache by default
    assert _cli(*command, cwd=tmp_path).returncode == 0
    with open(tmp_path / "runs" / "rel" / "train_options.json") as f:
        assert json.load(f)["feature_cache"] is True
    _resumed(_cli(*command, cwd=tmp_path), "runs/rel", 1)
    longer = _cli(*command, "--epochs=2", "--eval_every=2", cwd=tmp_path)
    _resumed(longer, "runs/rel", 1)
    assert "with changed schedule settings: epochs 1 -> 2, eval_every 1 -> 2" in longer.stderr
    with open(tmp_path / "runs" / "rel" / "config_changes.json") as f:
        assert [entry["changed"] for entry in json.load(f)] == [{"epochs": [1, 2], "eval_every": [1, 2]}]
    with open(tmp_path / "runs" / "rel" / "results.json") as f:
        assert json.load(f)["epochs_run"] == 2
    scored = _cli("--model_dir=runs/rel", "--data_dir=data", cwd=tmp_path, module="ctl_keras.evaluate")
    assert scored.returncode == 0 and (tmp_path / "runs" / "rel" / "eval.json").exists(), scored.stderr[-2000:]


@pytest.mark.slow
def test_default_synthetic_data_dir_is_generated_and_the_default_run_resumes(tmp_path):
    """`train --smoke` with no --data_dir still generates the synthetic dataset into its default directory
    tf_records/synthetic, and the same command again resumes the default (relative) runs/synthetic-hybrid.
    The run is trained without the feature cache: the rerun without --nofeature_cache keeps it off (the
    default is the resumed run's own), where a default of "on" refused it as another config."""
    command = ("--smoke", "--epochs=1")
    first = _cli(*command, "--nofeature_cache", cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "no built synthetic dataset in tf_records/synthetic: building it" in first.stderr
    assert (tmp_path / "tf_records" / "synthetic" / "manifest.json").exists()
    _resumed(_cli(*command, cwd=tmp_path), "runs/synthetic-hybrid", 1)
    with open(tmp_path / "runs" / "synthetic-hybrid" / "train_options.json") as f:
        assert json.load(f)["feature_cache"] is False
