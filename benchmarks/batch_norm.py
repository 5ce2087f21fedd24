"""Keras's BatchNormalization vs the fused kernel (ctl_keras.model.batch_norm.BatchNorm(fused=True)).

    python benchmarks/batch_norm.py [--repeats 9] [--rows 784] [--channels 256]

One training call, forward + backward (input, gamma and beta gradients), on the [rows, channels] input
of the demo's local and attention heads (16 scenes x 49 regions, hidden 256); 50 calls per
tf.function, the variants interleaved round by round, medians of --repeats rounds. On a GPU the fused
kernel replaces about two dozen launches by two; this measures what it costs or saves on this CPU,
which decides `BatchNorm(fused=None)` (fuse only when a GPU is visible).
"""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

import timing
from timing import interleaved_times

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 9, "Interleaved rounds; the median is reported.")
flags.DEFINE_integer("rows", 784, "Rows of the input (batch x regions).")
flags.DEFINE_integer("channels", 256, "Channels (the heads' hidden width).")

CALLS = 50


def _loop(layer, rows, channels):
    import tensorflow as tf

    layer.build((None, channels))
    x0 = tf.random.stateless_normal([rows, channels], [0, 1])

    @tf.function
    def run():
        acc, x = 0.0, x0
        for _ in tf.range(CALLS):
            x = x * 1.0001  # a new input each call, as a new batch would be
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * x)
            dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
            acc += dx[0, 0] + dgamma[0] + dbeta[0]
        return acc

    return lambda: run().numpy()


def main(argv):
    del argv
    import keras

    from ctl_keras.model.batch_norm import BatchNorm

    variants = {
        "keras_synchronized": _loop(keras.layers.BatchNormalization(synchronized=True), FLAGS.rows, FLAGS.channels),
        "fused": _loop(BatchNorm(fused=True, synchronized=True), FLAGS.rows, FLAGS.channels),
    }
    times = {name: [1000 * t / CALLS for t in ts] for name, ts in interleaved_times(variants, FLAGS.repeats).items()}
    print(f"BatchNorm forward + backward on [{FLAGS.rows}, {FLAGS.channels}], median of {FLAGS.repeats} rounds:")
    for name, t in times.items():
        print(f"  {name:20s} {statistics.median(t):.3f} ms per call (min {min(t):.3f}, max {max(t):.3f})")
    ratio = statistics.median(times["fused"]) / statistics.median(times["keras_synchronized"])
    print(f"  fused / keras: {ratio:.2f}")


if __name__ == "__main__":
    timing.run(main)
