"""Whole look vs one query per category, at C = 10 categories.

    python benchmarks/complete_look.py            # 5 timed repetitions per measurement
    python benchmarks/complete_look.py --full     # 20

One run: the synthetic config (112 px, backbone_weights=none: timing does not depend on weight
values) with its category list replaced by 10 names, an untrained model exported with a random
catalog of --per_category unit embeddings per category, then per repetition, for one JPEG scene:
- engine look: Recommender.look (complete_look_categories: backbone once, 10 searches), what
  `recommend look` runs after loading; vs engine query x C: Recommender.query once per category,
  what C `recommend query` calls run after loading (loading is excluded from both);
- recommender look: the recommender SavedModel's complete_look vs its serving_default once per category.
Prints medians (ms) and ratios; medians after 2 untimed warm-ups, ratios within this one run.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import flags

import timing
from timing import median_ms

FLAGS = flags.FLAGS
flags.DEFINE_bool("full", False, "20 timed repetitions instead of 5.")
flags.DEFINE_integer("num_categories", 10, "C, the number of categories of the benchmark model.")
flags.DEFINE_integer("per_category", 1000, "Catalog products per category.")
flags.DEFINE_integer("k", 10, "Products per category.")



def main(argv):
    del argv
    import tensorflow as tf

    from ctl_keras.model.ctl import build_ctl
    from ctl_keras.retrieval.index import CatalogIndex, save_index
    from ctl_keras.retrieval.recommender import Recommender
    from ctl_keras.savedmodel import exporter, warmup

    repeats, C, k = (20 if FLAGS.full else 5), FLAGS.num_categories, FLAGS.k
    config = timing.config().replace(categories=tuple(f"category{i}" for i in range(C)))
    models = build_ctl(config)
    rng = np.random.default_rng(0)
    n = C * FLAGS.per_category
    emb = rng.normal(size=(n, config.embedding_dim)).astype(np.float32)
    index = CatalogIndex(np.array([f"p{i}" for i in range(n)]), np.repeat(np.arange(C), FLAGS.per_category),
                         emb / np.linalg.norm(emb, axis=1, keepdims=True), config.categories,
                         {"model_fingerprint": exporter.model_fingerprint(models), "tower_version": 1})
    with tempfile.TemporaryDirectory() as tmp:
        dirs = exporter.export_models(models, config, tmp, index=index, top_k=k)
        index.meta["export_dir"] = tmp
        save_index(index, os.path.join(tmp, "catalog"))
        engine = Recommender.load(None, os.path.join(tmp, "catalog"))
        jpeg = warmup.example_images(config, seed=0)[0]
        names = list(config.categories)
        look = median_ms(lambda: engine.look(jpeg, names, k), repeats)
        per_query = median_ms(lambda: [engine.query(jpeg, c, k) for c in names], repeats)
        rec = tf.saved_model.load(dirs["recommender"])
        image = tf.constant([jpeg])
        rec_look = median_ms(lambda: rec.signatures["complete_look"](image_bytes=image)["d_star"].numpy(), repeats)
        serve = rec.signatures["serving_default"]
        rec_query = median_ms(lambda: [serve(image_bytes=image, category=tf.constant([c]))["d_star"].numpy()
                                        for c in names], repeats)
    print(f"C={C} categories, {FLAGS.per_category} products each, k={k}, {config.image_size} px, "
          f"median of {repeats} repetitions")
    print(f"engine       look {look:8.1f} ms   {C} x query {per_query:8.1f} ms   speed-up {per_query / look:.1f}x")
    print(f"recommender  look {rec_look:8.1f} ms   {C} x serving_default {rec_query:8.1f} ms   "
          f"speed-up {rec_query / rec_look:.1f}x")


if __name__ == "__main__":
    timing.run(main)
