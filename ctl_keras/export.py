"""`python -m ctl_keras.export` = `ctl export`: the command lives in ctl_keras/cli/export.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.export", run_name="__main__", alter_sys=True)
