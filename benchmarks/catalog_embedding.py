"""Catalog embedding throughput: `recommend index` on Beam (RunInference) vs a plain loop over the tower.

    python benchmarks/catalog_embedding.py                 # 512 products, 64 px tower, 3 repetitions

One run. An untrained smoke model (64 px input, random frozen ResNet50) is exported once; a catalog
of random 64 px JPEGs is written as `<dir>/<category>/<id>.jpg`. Each repetition times, end to end
(read the images, load the SavedModel, embed, assemble):
- loop: catalog.iter_products + the product tower's serving_default in batches of --batch_size,
  in this process (what `recommend index` did before Beam);
- beam: ctl_keras.retrieval.beam_embed.build_index, FnApiRunner, one worker (the local default);
- beam x2: the same with --direct_num_workers=2 --direct_running_mode=multi_processing.
Median images/s over --reps; ratios within the run. The two cores are shared with other jobs.
"""

import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import flags

import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("products", 512, "Catalog size.")
flags.DEFINE_integer("reps", 3, "Repetitions (median).")
flags.DEFINE_integer("batch_size", 32, "Images per tower call.")
flags.DEFINE_bool("two_workers", True, "Also run Beam with two worker processes.")


def _setup(tmp):
    from PIL import Image

    from ctl_keras.retrieval import bundle
    from ctl_keras.model.ctl import build_ctl

    config = timing.config()
    models = build_ctl(config)
    os.makedirs(f"{tmp}/model")
    models.save_heads(f"{tmp}/model/best.weights.h5")
    with open(f"{tmp}/model/config.json", "w") as f:
        json.dump(config.to_dict(), f)
    bundle.export_towers(f"{tmp}/model", f"{tmp}/export")
    rng = np.random.default_rng(0)
    for i in range(FLAGS.products):
        category = config.categories[i % len(config.categories)]
        os.makedirs(f"{tmp}/catalog/{category}", exist_ok=True)
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(f"{tmp}/catalog/{category}/p{i:05d}.jpg", quality=90)
    return config


def _loop(tmp, categories):
    import tensorflow as tf

    from ctl_keras.retrieval.catalog import iter_products

    signature = tf.saved_model.load(f"{tmp}/export/product_tower/1").signatures["serving_default"]
    images = [image for _, _, image in iter_products(f"{tmp}/catalog", categories)]
    out = [signature(image_bytes=tf.constant(images[i:i + FLAGS.batch_size]))["product_embedding"].numpy()
           for i in range(0, len(images), FLAGS.batch_size)]
    return np.concatenate(out)


def _beam(tmp, args):
    from ctl_keras.retrieval.beam_embed import build_index

    return build_index(f"{tmp}/export", f"{tmp}/catalog", batch_size=FLAGS.batch_size, beam_args=args,
                       staging_parent=tmp).embeddings


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        config = _setup(tmp)
        runs = {"loop": lambda: _loop(tmp, config.categories), "beam": lambda: _beam(tmp, [])}
        if FLAGS.two_workers:
            runs["beam x2"] = lambda: _beam(tmp, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
        times, outputs = {name: [] for name in runs}, {}
        for _ in range(FLAGS.reps):
            for name, run in runs.items():
                start = time.perf_counter()
                outputs[name] = run()
                times[name].append(time.perf_counter() - start)
        print(f"{FLAGS.products} products, {config.image_size} px tower, batch {FLAGS.batch_size}, "
              f"median of {FLAGS.reps}")
        loop = statistics.median(times["loop"])
        for name, t in times.items():
            med = statistics.median(t)
            diff = np.abs(outputs[name] - outputs["loop"]).max()
            print(f"{name:<8} {med:7.2f} s  {FLAGS.products / med:7.1f} images/s  {loop / med:5.2f}x loop  "
                  f"max |diff| vs loop {diff:.1e}  (runs: {', '.join(f'{x:.1f}' for x in t)})")


if __name__ == "__main__":
    timing.run(main)
