"""`python -m ctl_keras.build_dataset` = `ctl build`: the command lives in ctl_keras/cli/build.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.build", run_name="__main__", alter_sys=True)
