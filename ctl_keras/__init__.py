"""ctl_keras: Complete the Look (Kang et al., CVPR 2019) in Keras 3 / TensorFlow.

Python API (ctl_keras/api.py): `from ctl_keras import Recommender`, and `import ctl_keras.api as ctl`
for the jobs (ctl.build_dataset, ctl.train, ctl.evaluate, ctl.export, ctl.index_catalog). Recommender
loads on first use, so `import ctl_keras` stays cheap (no TensorFlow) and the command-line tools start fast.
"""

__version__ = "0.1.0"

# Only the class: the job functions' names (train, evaluate, export, build_dataset) are also this
# package's CLI modules, so they stay in ctl_keras.api, where `from ctl_keras import train` cannot reach.
_API = ("Recommender",)


def __getattr__(name):
    if name in _API:
        from ctl_keras import api

        return getattr(api, name)
    raise AttributeError(f"module 'ctl_keras' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
