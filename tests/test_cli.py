"""The shared CLI helper (ctl_keras/cli/__init__.py): output checks before work, one-line errors for TensorFlow
runtime errors, and no TensorFlow start-up noise on a machine without a GPU."""

import os
import shutil
import subprocess
import sys

import pytest

from ctl_keras import cli
from ctl_keras.utils import logs


def _run(module, *args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env or dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=timeout)


def _one_error_line(proc, prefix):
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"{prefix}: error: "), proc.stderr[-2000:]
    return errors[0]


def test_check_output_dir_and_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cli.check_output_dir(tmp_path / "new" / "deeper", "out")  # creatable: fine, and nothing created
    assert not (tmp_path / "new").exists()
    cli.check_output_dir(None, "out")
    with pytest.raises(ValueError, match=rf"--out={afile} is a file, not a directory"):
        cli.check_output_dir(afile, "out")
    with pytest.raises(ValueError, match=rf"--export_dir={afile}/sub/x cannot be created: {afile} is a file"):
        cli.check_output_dir(afile / "sub" / "x", "export_dir")
    with pytest.raises(ValueError, match="is a directory; expected a file name"):
        cli.check_output_file(tmp_path, "out")
    with pytest.raises(ValueError, match=rf"--out={afile}/eval.json cannot be created"):
        cli.check_output_file(afile / "eval.json", "out")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="no permission to write in"):
            cli.check_output_dir(locked / "sub", "out")


def test_positional_arguments_and_missing_flags_are_one_line():
    """The shared opening: same prefix convention and exit code for every CLI, no usage dump."""
    cases = [("ctl_keras.export", ["extra"], "export: error: unexpected arguments: extra"),
             ("ctl_keras.analysis", ["nope"], "analysis: error: expected one command out of attention, figures, "
                                              "human-kit, human-score, report; got ['nope']"),
             ("ctl_keras.analysis", ["figures"], "analysis figures: error: --model_dir is required"),
             ("ctl_keras.experiments", [], "experiments: error: --out is required")]
    for module, args, want in cases:
        proc = _run(module, *args, timeout=120)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [want], (module, proc.stderr[-2000:])


def test_startup_noise_filter_keeps_real_warnings():
    noise = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1795800270.881966    5751 cudart_stub.cc:31] Could not find cuda drivers on your "
             "machine, GPU will not be used.",
             "E0000 00:00:1795800273.526311    5751 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
             "error: Failed call to cuInit: UNKNOWN ERROR (303)"]
    real = ["W0000 00:00:1.0 1 op_kernel.cc:1857] OP_REQUIRES failed at example_parsing_ops.cc:98",
            "E0000 00:00:1.0 1 cuda_dnn.cc:535] Loaded runtime CuDNN library but source was compiled with ...",
            "UserWarning: something the user should see"]
    assert all(logs.is_startup_noise(line) for line in noise)
    assert not any(logs.is_startup_noise(line) for line in real)
    # With an NVIDIA driver loaded, a failed cuInit is a real error (wrong driver, permissions): kept.
    assert not logs.is_startup_noise(noise[2], has_nvidia_driver=True)


@pytest.mark.slow
def test_outputs_under_a_file_fail_before_any_work(untrained_model, synthetic_data, tmp_path):
    """Every CLI names the bad output flag at once; before, export/evaluate/analysis did all the work and
    then raised NotADirectoryError (a traceback) at the first write."""
    _, data_dir = synthetic_data
    model_dir = untrained_model[2]
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = f"{afile}/sub"
    cases = [
        ("ctl_keras.export", "export", "export_dir", [f"--model_dir={model_dir}", f"--export_dir={bad}"]),
        ("ctl_keras.evaluate", "evaluate", "out", [f"--model_dir={model_dir}", f"--data_dir={data_dir}",
                                                   f"--out={bad}/eval.json"]),
        ("ctl_keras.analysis", "analysis attention", "out", ["attention", f"--model_dir={model_dir}",
                                                             f"--data_dir={data_dir}", f"--out={bad}"]),
        ("ctl_keras.experiments", "experiments", "out", [f"--data_dir={data_dir}", f"--out={bad}", "--smoke",
                                                         "--methods=random", "--scenes=cropped"]),
    ]
    for module, prefix, flag, args in cases:
        proc = _run(module, *args)
        line = _one_error_line(proc, prefix)
        assert line == f"{prefix}: error: --{flag}={bad}{'/eval.json' if module.endswith('evaluate') else ''} " \
                       f"cannot be created: {afile} is a file, not a directory", line
        assert "tensorflow" not in proc.stderr.lower()  # failed before TensorFlow was even imported
    assert afile.read_text() == "x" and not os.path.exists(os.path.join(model_dir, "eval.json"))


@pytest.mark.slow
def test_truncated_tfrecord_is_one_line_and_no_startup_noise(untrained_model, synthetic_data, tmp_path):
    """evaluate on a dataset whose test shard lost its tail: one DataLossError line with the rebuild hint,
    exit 1 (before: a DataLossError traceback). Run with the user's environment (TF_CPP_MIN_LOG_LEVEL
    unset): none of TensorFlow's GPU-less start-up lines, the cuInit ERROR among them, reach stderr."""
    _, data_dir = synthetic_data
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    shard = sorted(copy.glob("pairs-test-*"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    model = tmp_path / "model"
    shutil.copytree(untrained_model[2], model)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = _run("ctl_keras.evaluate", f"--model_dir={model}", f"--data_dir={copy}", env=env)
    line = _one_error_line(proc, "evaluate")
    assert line.startswith("evaluate: error: DataLossError: ") and "rebuild the dataset" in line
    assert line == proc.stderr.strip().splitlines()[-1]
    for noise in ("cuInit", "cudart_stub", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    assert not (model / "eval.json").exists()


def test_error_line_of_a_tf_op_error_drops_the_graph_prefix():
    import tensorflow as tf

    err = tf.errors.DataLossError(None, None, "{{function_node __inference_x_12}} truncated record at 1234\n"
                                  "\t [[{{node IteratorGetNext}}]]")
    assert cli.error_line(err) == ("DataLossError: truncated record at 1234 (a damaged data file? rebuild the "
                                   "dataset with `ctl build`)")
    eager = tf.errors.DataLossError(None, None, "truncated record at 217400 [Op:IteratorGetNext] name: ")
    assert cli.error_line(eager).startswith("DataLossError: truncated record at 217400 [Op:IteratorGetNext] (a dam")
    assert cli.error_line(ValueError("two\n  lines")) == "two lines"


_BLOCKED_EXIT = """
import atexit, sys, time
from ctl_keras import cli

def main(argv):
    atexit.register(time.sleep, 600)  # stands in for TensorFlow's teardown waiting for a dead peer
    atexit.register(print, "atexit ran", file=sys.stderr)
    raise cli.{kind}("peer gone")

cli.run(main, "tool")
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind, waits", [("ExitNow", False), ("RuntimeError", True)])
def test_exit_now_skips_interpreter_shutdown(kind, waits):
    """ExitNow prints the one line and leaves without running atexit handlers, which may block."""
    command = [sys.executable, "-c", _BLOCKED_EXIT.format(kind=kind)]
    if waits:  # a plain RuntimeError runs the (blocking) handlers
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(command, capture_output=True, text=True, timeout=5)
        return
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert _one_error_line(proc, "tool") == "tool: error: peer gone"
    assert "atexit ran" not in proc.stderr
