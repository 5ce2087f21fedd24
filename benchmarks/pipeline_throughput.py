"""Input-pipeline throughput against the frozen ResNet50, measured in one run.

    python benchmarks/pipeline_throughput.py [--num_scenes N] [--image_size 112]

Builds (or reuses) a synthetic dataset, then measures
- train: triplets/s and images/s (3 images per triplet) of one epoch of `make_dataset(..., "train")`;
- eval: pairs/s of the val split (center view, 2 images per pair);
- backbone: images/s of `keras.applications.ResNet50(weights=None, include_top=False)` in inference
  mode at the same image size and batch size;
and prints pipeline images/s divided by backbone images/s (target: >= 3, so training is never
input-bound). Both sides use every CPU core, measured one after the other: in training they share them.
The first batch of every measurement is excluded (iterator start-up, tracing).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags, logging

import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_scenes", 200, "Synthetic scenes to generate (about 4 pairs per scene).")
flags.DEFINE_integer("image_size", 112, "Model input size S; resize_size is S * 8 / 7 (256 for 224).")
flags.DEFINE_integer("batch_size", 16, "Batch size of the pipeline and of the backbone.")
flags.DEFINE_integer("backbone_batches", 10, "Timed backbone batches.")
flags.DEFINE_integer("eval_repeats", 3, "Passes over the val split for the eval figure.")
flags.DEFINE_string("data_dir", None, "Dataset directory; default /tmp/ctl_bench/synthetic-<num_scenes>.")


def _config(image_size: int):

    grid = 7 if (image_size // 16) % 7 == 0 else image_size // 16
    return timing.config(image_size=image_size, resize_size=image_size * 8 // 7, local_grid=grid)


def _dataset(config, num_scenes: int, data_dir: str) -> str:
    from ctl_keras.builder import build as build_dataset
    from ctl_keras.data import dataset_dir

    try:
        manifest = dataset_dir.read_manifest(data_dir)
        if manifest.get("flags", {}).get("synthetic_kwargs", {}).get("num_scenes") == num_scenes:
            logging.info("reusing %s", data_dir)
            return data_dir
    except (FileNotFoundError, ValueError):
        pass
    logging.info("building a synthetic dataset of %d scenes in %s", num_scenes, data_dir)
    build_dataset.build(config, data_dir, synthetic_kwargs={"num_scenes": num_scenes})
    return data_dir


def _rate(iterable, count_of) -> tuple[float, int]:
    """Items per second over all but the first batch."""
    iterator = iter(iterable)
    next(iterator)
    start, count = time.perf_counter(), 0
    for batch in iterator:
        count += count_of(batch)
    elapsed = time.perf_counter() - start
    if count == 0:
        raise ValueError("too few batches to time: use a larger --num_scenes")
    return count / elapsed, count


def measure(config, data_dir: str, batch_size: int, backbone_batches: int, eval_repeats: int) -> dict:
    import keras
    import tensorflow as tf

    from ctl_keras.data import pipeline

    size = lambda b: int(b["pair_id"].shape[0])
    train = pipeline.make_dataset(config, "train", data_dir, epoch_index=0, batch_size=batch_size)
    triplets, n_train = _rate(train, size)
    logging.info("train: %d triplets timed", n_train)
    val = pipeline.make_dataset(config, "val", data_dir, batch_size=batch_size).repeat(eval_repeats)
    pairs, n_val = _rate(val, size)
    logging.info("eval: %d pairs timed", n_val)

    s = config.image_size
    model = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(s, s, 3))
    model.trainable = False
    forward = tf.function(lambda x: model(x, training=False))
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, s, s, 3)).astype("float32"))
    backbone, _ = _rate((forward(images).numpy() for _ in range(backbone_batches + 1)), lambda _: batch_size)
    return {"train_triplets_per_s": triplets, "train_images_per_s": 3 * triplets, "eval_pairs_per_s": pairs,
            "eval_images_per_s": 2 * pairs, "backbone_images_per_s": backbone,
            "ratio_train": 3 * triplets / backbone, "ratio_eval": 2 * pairs / backbone}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = _config(FLAGS.image_size)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    data_dir = FLAGS.data_dir or f"/tmp/ctl_bench/synthetic-{FLAGS.num_scenes}"
    try:
        _dataset(config, FLAGS.num_scenes, data_dir)
        r = measure(config, data_dir, FLAGS.batch_size, FLAGS.backbone_batches, FLAGS.eval_repeats)
    except (FileNotFoundError, ValueError) as e:
        print(f"pipeline_throughput: {e}", file=sys.stderr)
        return 1
    print(f"image_size={config.image_size} resize_size={config.resize_size} batch={FLAGS.batch_size} "
          f"cpus={os.cpu_count()}")
    print(f"train pipeline : {r['train_triplets_per_s']:8.1f} triplets/s = {r['train_images_per_s']:8.1f} images/s")
    print(f"eval pipeline  : {r['eval_pairs_per_s']:8.1f} pairs/s    = {r['eval_images_per_s']:8.1f} images/s")
    print(f"ResNet50 frozen: {r['backbone_images_per_s']:8.1f} images/s")
    verdict = "ok" if r["ratio_train"] >= 3 else "BELOW the 3x target"
    print(f"pipeline/backbone: train {r['ratio_train']:.1f}x ({verdict}), eval {r['ratio_eval']:.1f}x")
    return 0


if __name__ == "__main__":
    timing.run(main)
