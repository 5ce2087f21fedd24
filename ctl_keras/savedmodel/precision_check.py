"""The export's bfloat16 check: the towers under both backbone precisions on one sample of images.

The sample is agreement.dataset_sample's (the run's test split, else seeded synthetic images). Queries are searched against the catalog index when one is bundled, else against the sample's
products. The numbers go in ctl_export.json (`backbone_agreement`) and one log line.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctl_keras.model import agreement

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
