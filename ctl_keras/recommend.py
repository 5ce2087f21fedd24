"""`python -m ctl_keras.recommend` = `ctl recommend`: the command lives in ctl_keras/cli/recommend.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.recommend", run_name="__main__", alter_sys=True)
