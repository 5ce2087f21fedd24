"""The heads' largest matmul in its two roles: forward, and the weight gradient three ways.

    python benchmarks/matmul_layouts.py [--repeats 7]

X = [784, 1024] (16 scenes x 49 regions of the local/attention heads), W = [1024, 256], dY = [784, 256].
Forward X @ W; the weight gradient Xᵀ @ dY as autodiff emits it (`transpose_a=True`), and with X already
transposed in memory (a captured [1024, 784] tensor, which Grappler cannot fold into transpose_a), and
as (dYᵀ @ X)ᵀ (the transpose_a on the smaller operand, then a [256, 1024] transpose).
50 products per tf.function call, the variants interleaved round by round, medians of --repeats rounds.
Why the cached train step stays below the 70% roofline here: the backward's weight gradients are
its largest matmuls (BUILD_NOTES, stop 17).
"""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

import timing
from timing import interleaved_times

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 7, "Interleaved rounds; the median is reported.")
CALLS = 50


def main(argv):
    del argv
    import tensorflow as tf

    m, k, n = timing.pick((784, 1024, 256), (16, 32, 8))
    x, w, dy = tf.random.normal([m, k]), tf.random.normal([k, n]), tf.random.normal([m, n])
    xt = tf.transpose(x)

    def loop(product):
        @tf.function
        def run():
            acc = 0.0
            for _ in tf.range(CALLS):
                acc += product()[0, 0]
            return acc

        return lambda: run().numpy()

    variants = {"forward X@W": loop(lambda: tf.matmul(x, w)),
                "weight grad, transpose_a": loop(lambda: tf.matmul(x, dy, transpose_a=True)),
                "weight grad, X pre-transposed": loop(lambda: tf.matmul(xt, dy)),
                "weight grad as (dY^T X)^T": loop(lambda: tf.transpose(tf.matmul(dy, x, transpose_a=True)))}
    times = {name: [t / CALLS for t in ts] for name, ts in interleaved_times(variants, FLAGS.repeats).items()}
    print(f"[{m}, {k}] x [{k}, {n}] products, median of {FLAGS.repeats} rounds:")
    for name, t in times.items():
        median = statistics.median(t)
        print(f"  {name:32s} {1000 * median:.3f} ms  {2 * m * k * n / median / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    timing.run(main)
