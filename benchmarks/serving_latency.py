"""Scene-tower latency: the exported SavedModel (JPEG bytes in) vs the in-process Keras call.

    python benchmarks/serving_latency.py            # batch 1 and 32, 5 timed calls each
    python benchmarks/serving_latency.py --full     # 30 timed calls each

One run: builds the synthetic config's model (112 px, 7x7 grid, backbone_weights=none: latency does
not depend on the weight values), exports it to a temp dir, then times per batch size
- savedmodel: `serving_default(image_bytes, category)` of the loaded SavedModel (decode, resize and
  crop in the graph), the path TF Serving runs;
- keras: `scene_tower(...)` on already-decoded float images (the in-process call);
- keras+decode: the same with the pipeline's eager decode/eval_view first (same work as savedmodel);
and prints median milliseconds and the ratios (target: savedmodel within 1.2x of in-process).
Medians after 2 untimed warm-up calls; the machine's other load adds noise, so read ratios, not ms.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging

import timing
from timing import median_ms

FLAGS = flags.FLAGS
flags.DEFINE_bool("full", False, "30 timed calls per measurement instead of 5.")
flags.DEFINE_list("batch_sizes", ["1", "32"], "Batch sizes to time.")



def main(argv):
    del argv
    import tensorflow as tf

    from ctl_keras.data.pipeline import decode_image, eval_view
    from ctl_keras.model.ctl import build_ctl
    from ctl_keras.savedmodel import exporter, warmup

    repeats = 30 if FLAGS.full else 5
    config = timing.config()  # 112 px, backbone_weights="none"
    models = build_ctl(config)
    with tempfile.TemporaryDirectory() as tmp:
        logging.info("exporting to %s", tmp)
        served = tf.saved_model.load(exporter.export_models(models, config, tmp)["scene_tower"])
        serve = served.signatures["serving_default"]
        jpeg = warmup.example_images(config, seed=0)[0]
        rows = []
        for b in (int(x) for x in FLAGS.batch_sizes):
            image_bytes = tf.constant([jpeg] * b)
            names = tf.constant([config.categories[i % len(config.categories)] for i in range(b)])
            ids = tf.constant([i % len(config.categories) for i in range(b)], tf.int32)
            floats = tf.stack([eval_view(decode_image(jpeg), config)] * b)

            def keras_decode():
                x = tf.stack([eval_view(decode_image(j), config) for j in [jpeg] * b])
                return models.scene_tower({"image": x, "category": ids}, training=False)["query"].numpy()

            # The fair in-process baseline: the same Keras tower traced once (the eager call pays Python
            # per-layer overhead that no serving path has).
            traced = tf.function(lambda x, c: models.scene_tower({"image": x, "category": c}, training=False))

            saved = median_ms(lambda: serve(image_bytes=image_bytes, category=names)["query"].numpy(), repeats)
            keras_fn = median_ms(lambda: traced(floats, ids)["query"].numpy(), repeats)
            keras = median_ms(lambda: models.scene_tower({"image": floats, "category": ids},
                                                          training=False)["query"].numpy(), repeats)
            keras_dec = median_ms(keras_decode, repeats)
            rows.append((b, saved, keras_fn, keras, keras_dec))
    print(f"scene tower, image {config.image_size}px, grid {config.local_grid}, {repeats} timed calls, median ms")
    print("savedmodel: JPEG bytes in (decode + crop in the graph); keras_fn: tf.function of the tower on floats;")
    print("keras: eager tower call on floats; keras+decode: eager decode + crop + call")
    print(f"{'batch':>5} {'savedmodel':>11} {'keras_fn':>9} {'keras':>9} {'keras+decode':>13} {'sm/keras_fn':>12} {'sm/keras':>9}")
    for b, saved, keras_fn, keras, keras_dec in rows:
        print(f"{b:5d} {saved:11.1f} {keras_fn:9.1f} {keras:9.1f} {keras_dec:13.1f} {saved / keras_fn:12.2f} {saved / keras:9.2f}")


if __name__ == "__main__":
    timing.run(main)
