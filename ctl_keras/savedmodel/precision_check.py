"""The export's bfloat16 check: the towers under both backbone precisions on one sample of images.

The sample is the first `n` test scenes (with their categories) and test products of the run's dataset
when that dataset is on this machine, else `n` seeded synthetic images (weaker evidence, and the metadata
says so). Queries are searched against the catalog index when one is bundled, else against the sample's
products. The numbers go in ctl_export.json (`backbone_agreement`) and one log line.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from ctl_keras.model import agreement

SAMPLE = 64  # scenes and products: a few seconds of backbone on a CPU


def dataset_sample(config, data_dir: str | None, n: int = SAMPLE) -> dict:
    """{"scenes": [n,S,S,3], "category": [n] int32, "products": [m,S,S,3], "source": str}."""
    from ctl_keras.data import pipeline  # noqa: PLC0415

    if data_dir and os.path.exists(os.path.join(data_dir, "manifest.json")):
        view = lambda jpeg: pipeline.eval_view(pipeline.decode_image(jpeg), config)  # noqa: E731
        scenes, cats = [], []
        for ex in pipeline.raw_pairs(data_dir, "test").take(n):
            scenes.append(view(ex["scene_jpeg"]))
            cats.append(int(ex["category_index"]))
        products = [view(ex["product_jpeg"]) for ex in pipeline.raw_products(data_dir, "test").take(n)]
        if scenes and products:
            return {"scenes": tf.stack(scenes), "category": np.array(cats, np.int32),
                    "products": tf.stack(products), "source": f"test split of {os.path.abspath(data_dir)}"}
    rng = np.random.default_rng(0)
    size = config.image_size
    # Smooth random images (a coarse grid upsampled): closer to photographs than white noise.
    coarse = rng.uniform(0, 255, (2 * n, 8, 8, 3)).astype(np.float32)
    images = tf.image.resize(coarse, [size, size])
    return {"scenes": images[:n], "category": (np.arange(n) % len(config.categories)).astype(np.int32),
            "products": images[n:], "source": "synthetic (no dataset of the run on this machine)"}


def _outputs(models, backbone, sample) -> tuple[np.ndarray, np.ndarray]:
    call = tf.function(lambda x: backbone(x, training=False))
    s = call(sample["scenes"])
    q = models.scene_head({"pool5": s["pool5"], "local": s["local"],
                           "category": tf.constant(sample["category"])}, training=False)["query"]
    p = models.product_head({"pool5": call(sample["products"])["pool5"]}, training=False)["product_embedding"]
    return np.asarray(q), np.asarray(p)


def measure(models, bf16, sample, catalog=None) -> dict:
    """agreement.compare of the float32 towers and the towers on the `bf16` backbone, + the sample's source."""
    ref_q, ref_p = _outputs(models, models.backbone, sample)
    new_q, new_p = _outputs(models, bf16, sample)
    return {**agreement.compare(ref_q, new_q, ref_p, new_p, catalog=catalog), "sample": sample["source"]}
