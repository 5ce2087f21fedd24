"""The train step in a process that has, or has not, iterated a `from_generator` dataset before.

    python benchmarks/input_source.py [--rounds 3] [--repeats 5]

Each round starts one child process per input kind, one after the other: the child drains a small
dataset of that kind (none / `Dataset.from_generator` / `Dataset.range(...).map(tf.numpy_function)`),
then times the demo's cached train step on in-memory feature batches through the real loop
(`train_step_parts.trainer_parts` + `run_epoch`, 16 steps per call, 128 steps per epoch; the median of
--repeats epochs after one untimed). The step itself never reads the drained dataset, so any
difference is what the input kind leaves behind in the process. The trainer's feature-cache input uses
the numpy_function form (ctl_keras/feature_cache/cache.py).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 3, "Rounds of one child per input kind; medians over rounds are reported.")
flags.DEFINE_integer("repeats", 5, "Timed epochs per child (median).")
flags.DEFINE_string("child", None, "Internal: run one child of this input kind and print its JSON.")

KINDS = ("none", "from_generator", "numpy_function")


def _drain(kind: str) -> None:
    import numpy as np
    import tensorflow as tf

    batch = np.zeros([16, 7, 7, 1024], np.float16)
    spec = tf.TensorSpec([None, 7, 7, 1024], tf.float16)
    if kind == "from_generator":
        ds = tf.data.Dataset.from_generator(lambda: (batch for _ in range(20)), output_signature=spec)
    elif kind == "numpy_function":
        ds = tf.data.Dataset.range(20).map(lambda i: tf.numpy_function(lambda _: batch, [i], tf.float16))
    else:
        return
    for _ in ds.map(lambda x: tf.cast(x, tf.float32)).prefetch(2):
        pass


def _child(kind: str, repeats: int) -> dict:
    import tensorflow as tf
    import train_step_parts as parts

    from ctl_keras.training.loop import device_batches
    from ctl_keras.training.step import run_epoch

    _drain(kind)
    config = timing.config()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    steps = 128
    data = parts.feature_batches(config, steps)
    list(data)
    step, _ = parts.trainer_parts(config, strategy, steps_per_execution=16)
    median, times = parts.median_epoch(
        lambda: run_epoch(step, device_batches(strategy, data), 1, steps, progress=False), repeats)
    return {"kind": kind, "ms_per_step": 1000 * median / steps, "epoch_seconds": times}


def main(argv):
    del argv
    if FLAGS.child:
        print(json.dumps(_child(FLAGS.child, FLAGS.repeats)))
        return
    results = {kind: [] for kind in KINDS}
    for _ in range(FLAGS.rounds):
        for kind in KINDS:
            out = subprocess.run([sys.executable, __file__, f"--child={kind}", f"--repeats={FLAGS.repeats}",
                                  f"--smoke={FLAGS.smoke}"],
                                 capture_output=True, text=True, check=True).stdout
            results[kind].append(json.loads(out.strip().splitlines()[-1])["ms_per_step"])
    print(f"demo cached step (16 per call), ms per step: median over {FLAGS.rounds} processes each "
          f"(load {os.getloadavg()[0]:.1f} at the end)")
    for kind, values in results.items():
        print(f"  after {kind:15s} median {statistics.median(values):5.1f}  min {min(values):5.1f}   "
              f"all: {', '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    timing.run(main)
