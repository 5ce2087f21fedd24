"""Which dataset a command works on: the spec recorded in a built directory's manifest, or the one
--dataset names (a built-in name or a spec file), checked against each other. Plain file reads where
local, so a wrong flag never waits for TensorFlow."""

from __future__ import annotations

import json
import os

from ctl_keras import spec as spec_lib


def manifest_spec(data_dir: str) -> dict | None:
    """The spec recorded in `data_dir`'s manifest.json; None when the directory has no manifest.
    Plain file reads where local, so a flag error never waits for TensorFlow."""
    path = os.path.join(data_dir, "manifest.json")
    try:
        if "://" in data_dir:
            import tensorflow as tf  # noqa: PLC0415 (object stores only)

            if not tf.io.gfile.exists(path):
                return None
            with tf.io.gfile.GFile(path) as f:
                manifest = json.load(f)
        else:
            if not os.path.isfile(path):
                return None
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if "spec" not in manifest:
        raise ValueError(f"{path} records no dataset spec (an older build): rebuild with "
                         f"`ctl build --dataset={manifest.get('dataset', 'NAME')} --out={data_dir}`")
    return manifest["spec"]


def resolve_dataset(dataset: str | None, data_dir: str | None) -> tuple[spec_lib.DatasetSpec, str]:
    """(the dataset's spec, its directory) from --dataset and --data_dir (see the module docstring)."""
    asked = spec_lib.resolve(dataset) if dataset else None
    directory = data_dir or os.path.join("tf_records", (asked.name if asked else "synthetic"))
    recorded = manifest_spec(directory)
    if recorded is None:
        return asked or spec_lib.resolve("synthetic"), directory
    built = spec_lib.resolve(recorded)
    if asked is not None and asked.identity() != built.identity():
        what = "name" if asked.name != built.name else "spec (taxonomy, crop rule or format)"
        raise ValueError(f"--dataset={dataset} does not match the {what} that {directory} was built from "
                         f"({built.name!r}): drop --dataset (the data names its dataset) or rebuild {directory}")
    return built, directory
