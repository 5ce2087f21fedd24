"""MirroredStrategy over 2 logical CPU devices trains the same heads as one device.

The CPU is split before TensorFlow initializes, so this runs in a fresh process. Dropout is 0: each
replica draws its own dropout mask by design; the heads' BatchNorm is synchronized across replicas, so
with the loss averaged over the global batch the two runs compute the same updates up to float order.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers.run_files import weight_arrays

SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ctl_keras.config import get_config
    from ctl_keras.training import loop
    data_dir, out = sys.argv[1], sys.argv[2]
    config = get_config("synthetic", smoke=True, dropout=0.0, epochs=1)
    for strategy, per_call in (("one_device", 1), ("mirrored", 3)):
        loop.train(config, loop.RunOptions(data_dir=data_dir, model_dir=f"{out}/{strategy}",
                                           strategy=strategy, feature_cache=True, steps_per_execution=per_call))
""")

DEVICE_SCRIPT = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ctl_keras.training import loop
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    ds = tf.data.Dataset.from_tensor_slices({"x": tf.range(8.0)}).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(ds, loop.DEVICE_INPUT)))
    print(" ".join(v.device for v in batch["x"].values))
""")




@pytest.mark.slow
def test_mirrored_two_replicas_equals_one_device(feature_run, tmp_path):
    """Same data, seed and global batch (8 = 2 x 4), one epoch: head weights agree within tolerance.
    The mirrored run also runs 3 steps per tf.function call (the one-device run 1)."""
    _, data_dir, _, _ = feature_run
    done = subprocess.run([sys.executable, "-c", SCRIPT, data_dir, str(tmp_path)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "mirrored" / "results.json") as f:
        mirrored = json.load(f)
    with open(tmp_path / "one_device" / "results.json") as f:
        single = json.load(f)
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    a = weight_arrays(tmp_path / "one_device" / "last.weights.h5")
    b = weight_arrays(tmp_path / "mirrored" / "last.weights.h5")
    assert a.keys() == b.keys() and len(a) > 0
    # The bias before each BatchNorm has an exactly-zero gradient (BN subtracts it again), so what it
    # gets is float noise, which Adam turns into steps of about lr = 1e-3 in either direction; it and
    # the BN moving means that include it drift apart by a few 1e-4 over the 19 steps of an epoch.
    # Every other weight agrees to ~1e-5 relative; atol = one Adam step covers the drift.
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-3, err_msg=name)
    # Both runs trained: the BatchNorm moving means (vars/2 in the .weights.h5) left their initial zeros.
    assert any(name.endswith("batch_norm/vars/2") and np.abs(a[name]).max() > 1e-3 for name in a)
    with open(os.path.join(data_dir, "manifest.json")) as f:
        questions = json.load(f)["splits"]["val"]["questions"]
    assert abs(mirrored["val_auc"] - single["val_auc"]) <= 1 / questions  # one question may flip at most


@pytest.mark.slow
def test_batches_are_fetched_to_each_replicas_device():
    """loop.DEVICE_INPUT: each replica's share of a batch already sits on that replica's device."""
    done = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    devices = done.stdout.split()
    assert len(devices) == 2 and devices[0].endswith("CPU:0") and devices[1].endswith("CPU:1"), devices
