"""`ctl COMMAND` (setup.py's console script: ctl_keras.__main__:main) behaves as `python -m ctl_keras.X`."""

import os
import subprocess
import sys

import pytest

from ctl_keras.__main__ import COMMANDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the console script's wrapper does: import the entry point and exit with what it returns.
CONSOLE_SCRIPT = "import sys; from ctl_keras.__main__ import main; sys.exit(main())"


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_every_command_names_a_module_with_a_main():
    import importlib.util

    for name, (module, _) in COMMANDS.items():
        spec = importlib.util.find_spec(module)
        assert spec is not None, name
        main_file = spec.origin if not spec.submodule_search_locations else os.path.join(
            spec.submodule_search_locations[0], "__main__.py")
        assert 'if __name__ == "__main__":' in open(main_file).read(), name


def test_help_and_unknown_command():
    proc = _run("-c", CONSOLE_SCRIPT, "--help")
    assert proc.returncode == 0 and all(name in proc.stdout for name in COMMANDS)
    proc = _run("-c", CONSOLE_SCRIPT)
    assert proc.returncode == 2 and "usage: ctl COMMAND" in proc.stderr
    proc = _run("-c", CONSOLE_SCRIPT, "trian")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["ctl: error: unknown command 'trian'; one of: " + ", ".join(COMMANDS)]


@pytest.mark.slow
@pytest.mark.parametrize("args, module", [(["evaluate"], "ctl_keras.evaluate"),
                                          (["recommend", "query"], "ctl_keras.recommend"),
                                          (["train", "--epochs=0"], "ctl_keras.train")])
def test_command_equals_python_m(args, module):
    """Same one-line error, same exit code, through the console script, `python -m ctl_keras` and
    `python -m <module>`."""
    script = _run("-c", CONSOLE_SCRIPT, *args)
    package = _run("-m", "ctl_keras", *args)
    direct = _run("-m", module, *args[1:])
    assert script.returncode == package.returncode == direct.returncode == 1
    line = direct.stderr.strip().splitlines()[-1]
    assert ": error: " in line
    assert script.stderr.strip().splitlines()[-1] == package.stderr.strip().splitlines()[-1] == line


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_command_help_lists_its_own_flags_grouped_and_hides_absl(flag):
    """`ctl train -h` was an error and `--help` showed 9 flags: both now list every flag train defines
    (its own and the shared dataset/model group) with defaults, and none of absl's (--pdb)."""
    proc = _run("-c", CONSOLE_SCRIPT, "train", flag)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("usage: ctl train [flags]")
    for title in ("train options:", "data options:", "model options:", "training options:"):
        assert title in out, title
    for name in ("--epochs", "--data_dir", "--learning_rate", "--model_dir", "--feature_cache (default (none))"):
        assert name in out, name
    assert "--pdb" not in out and "--run_with_profiling" not in out


def test_serve_is_a_ctl_command():
    proc = _run("-c", CONSOLE_SCRIPT, "serve", "--help")
    assert proc.returncode == 0 and "--index" in proc.stdout and "--head_timeout=10.0" in proc.stdout
