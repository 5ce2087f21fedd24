"""`python -m ctl_keras.train` = `ctl train`: the command lives in ctl_keras/cli/train.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.train", run_name="__main__", alter_sys=True)
