"""`python -m ctl_keras.evaluate` = `ctl evaluate`: the command lives in ctl_keras/cli/evaluate.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.evaluate", run_name="__main__", alter_sys=True)
