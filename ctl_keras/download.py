"""`python -m ctl_keras.download` = `ctl download`: the command lives in ctl_keras/cli/download.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.download", run_name="__main__", alter_sys=True)
