"""Reading a model_dir in tests: weight arrays of a .weights.h5 file and the last checkpointed epoch."""

import os

import h5py


def weight_arrays(path) -> dict:
    """Every dataset of an h5 weights file, by its path in the file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def latest_epoch(model_dir) -> int:
    """The epoch of the newest checkpoint (0 when none): its index names "ckpt-N"."""
    index = os.path.join(model_dir, "checkpoints", "checkpoint")
    if not os.path.exists(index):
        return 0
    with open(index) as f:
        first = f.readline()  # model_checkpoint_path: "ckpt-N"
    return int(first.rsplit("-", 1)[1].strip().strip('"'))
