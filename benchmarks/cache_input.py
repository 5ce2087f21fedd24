"""The cached epoch's input alone: `FeatureCache.train_dataset` drained without any train step.

    python benchmarks/cache_input.py [--repeats 7] [--num_views 2] [--cache_dir DIR]

Variants, interleaved epoch by epoch, medians of --repeats epochs (after one untimed epoch each):
- train_dataset: what the trainer reads (a `tf.numpy_function` gathers float16 rows per batch index,
  tf.data casts them to float32);
- from_generator_float32: the same rows converted to float32 in a Python generator read by
  `from_generator` (the trainer's input before stop 17);
- gather_only: the NumPy row gathers of an epoch, no tf.data.
On a 2-core host this input time is CPU the train step competes for (`make demo` runs it every epoch).
Only input is timed here; what iterating a from_generator dataset does to the train steps of the same
process afterwards is benchmarks/input_source.py.
"""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

import timing
from timing import interleaved_times

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 7, "Epochs per variant; the median is reported.")
flags.DEFINE_integer("num_views", 2, "Cached views per train scene (the demo's 2).")
flags.DEFINE_string("data_dir", "tf_records/synthetic", "Built synthetic dataset.")
flags.DEFINE_string("cache_dir", None, "Feature cache (default: the trainer's location; built when missing).")


def _from_generator_float32(cache, config, plan, s):
    import numpy as np
    import tensorflow as tf

    from ctl_keras.feature_cache.cache import _gather

    ds = cache.train_dataset(config, 0, config.batch_size)
    n, b = len(plan["scene_row"]), config.batch_size

    def batches():
        for start in range(0, n, b):
            i = slice(start, start + b)
            yield {"scene_pool5": _gather(s["scene_pool5"], plan["scene_row"][i], plan["scene_view"][i]).astype(np.float32),
                   "scene_local": _gather(s["scene_local"], plan["scene_row"][i], plan["scene_view"][i]).astype(np.float32),
                   "positive_pool5": _gather(s["product_pool5"], plan["positive_row"][i],
                                             plan["positive_view"][i]).astype(np.float32),
                   "negative_pool5": _gather(s["product_pool5"], plan["negative_row"][i],
                                             plan["negative_view"][i]).astype(np.float32),
                   "category": plan["category"][i].astype(np.int32)}

    return tf.data.Dataset.from_generator(batches, output_signature=ds.element_spec).prefetch(2)


def main(argv):
    del argv
    import tensorflow as tf

    from ctl_keras.feature_cache import FeatureCache, default_cache_dir
    from ctl_keras.feature_cache.cache import _gather
    from ctl_keras.model.ctl import build_ctl

    config = timing.config(num_views=FLAGS.num_views)
    cache_dir = FLAGS.cache_dir or default_cache_dir(config, FLAGS.data_dir, False)
    cache = FeatureCache.build_or_load(config, FLAGS.data_dir, cache_dir, build_ctl(config).backbone)
    s = cache.split("train")
    plan = cache.epoch_plan(config.seed, 0)
    steps = -(-len(plan["scene_row"]) // config.batch_size)

    @tf.function
    def drain(dataset):
        count = 0
        for _ in dataset:
            count += 1
        return count

    def gather_only():
        for start in range(0, len(plan["scene_row"]), config.batch_size):
            i = slice(start, start + config.batch_size)
            _gather(s["scene_local"], plan["scene_row"][i], plan["scene_view"][i])

    variants = {"train_dataset": lambda: drain(cache.train_dataset(config, 0, config.batch_size)),
                "from_generator_float32": lambda: drain(_from_generator_float32(cache, config, plan, s)),
                "gather_only": gather_only}
    times = interleaved_times(variants, FLAGS.repeats)
    print(f"cached epoch input, {steps} batches of {config.batch_size}, {FLAGS.num_views} views, "
          f"median of {FLAGS.repeats} (load {os.getloadavg()[0]:.1f}):")
    for name, t in times.items():
        median = statistics.median(t)
        print(f"  {name:22s} {median:.3f} s/epoch  {1000 * median / steps:.2f} ms/batch  (min {min(t):.3f}, max {max(t):.3f})")


if __name__ == "__main__":
    timing.run(main)
