"""`python -m ctl_keras.analysis` = `ctl analysis`: the command lives in ctl_keras/cli/analysis.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.analysis", run_name="__main__", alter_sys=True)
