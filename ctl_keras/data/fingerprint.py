"""A built dataset's identity: which pairs, products and questions each split holds.

A model_dir records it so that resuming (or evaluating by default) against another build is refused: a
rebuild that drops a few images reshuffles the scene split, and a test AUC scored on the new test split
would include scenes the first run trained on. Paths and build flags (runner, workers, where the raw
files were) are left out: the same data built elsewhere or by another runner is the same dataset.
"""

from __future__ import annotations

import hashlib
import json
import os

import tensorflow as tf

from ctl_keras.data import dataset_dir, tfrecords

# Manifest fields that describe the content; "flags" (paths, runner) and "config" (build settings that
# the content already reflects) are not part of the identity.
CONTENT_KEYS = ("dataset", "schema_version", "pairs_in", "pairs_kept", "pairs_dropped", "categories", "splits")


def dataset_fingerprint(data_dir) -> str:
    """sha256 (first 16 hex digits) of the manifest's split contents and the val/test question files.

    The questions list each val/test scene and product by id, so two builds whose splits have the same
    counts but other scenes still differ.
    """
    manifest = dataset_dir.read_manifest(data_dir)
    digest = hashlib.sha256()
    content = {k: manifest.get(k) for k in CONTENT_KEYS}
    digest.update(json.dumps(content, sort_keys=True).encode())
    for split in ("val", "test"):
        path = os.path.join(os.fspath(data_dir), tfrecords.questions_file_name(split))
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]
