"""`python -m ctl_keras.experiments` = `ctl experiments`: the command lives in ctl_keras/cli/experiments.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.experiments", run_name="__main__", alter_sys=True)
