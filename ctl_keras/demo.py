"""`python -m ctl_keras.demo` = `ctl demo`: the command lives in ctl_keras/cli/demo.py."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ctl_keras.cli.demo", run_name="__main__", alter_sys=True)
