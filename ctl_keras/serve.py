"""`python -m ctl_keras.serve` = `ctl serve`: the command lives in ctl_keras/cli/serve.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.serve", run_name="__main__", alter_sys=True)
