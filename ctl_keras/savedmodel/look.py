"""`complete_look` signatures: one scene photo, every category at once.

Scene tower:  complete_look(image_bytes [B]) and complete_look_categories(image_bytes [B], categories [C])
              -> query [B, C, d], attention [B, C, g, g].
Recommender:  the same two inputs -> product_ids [B, C, K], d_star [B, C, K], num_results [B, C].

The backbone (nearly all of the compute) runs once per image; only its pool5/local features are
repeated C times and fed to the scene head, which computes the per-category attention and query.
A SavedModel signature has no optional inputs, hence two signatures: without `categories` every
category of the model, in the model's order.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctl_keras.savedmodel import parts as shared

LOOK_SIGNATURES = ("complete_look", "complete_look_categories")


def _category_list_ids(table, categories, all_categories):
    """[C] names -> [C] int32 ids; at least one name, every name known (assertion lists the valid ones)."""
    ids = table.lookup(categories)
    checks = [
        tf.debugging.Assert(tf.size(categories) > 0, ["empty category list: send at least one category name"]),
        tf.debugging.Assert(tf.reduce_all(ids >= 0),
                            ["unknown category name(s):", tf.boolean_mask(categories, ids < 0),
                             f"valid names: {', '.join(all_categories)}"]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(ids)


def scene_look(parts, images, ids):
    """images [B, S, S, 3], category ids [C] -> {"query": [B, C, d], "attention": [B, C, g, g]}.

    `parts`: the module's `shared.TowerParts` of the scene tower."""
    features = parts.features(images)
    b, c = tf.shape(images)[0], tf.shape(ids)[0]
    # Row b*C + j is (image b, category j): repeat each image's features, tile the category list.
    repeat = lambda t: tf.repeat(t, c, axis=0)
    out = parts.scene_head(repeat(features["pool5"]), repeat(features["local"]), tf.tile(ids, [b]))
    query, attention = out["query"], out["attention"]
    return {"query": tf.reshape(query, tf.concat([[b, c], tf.shape(query)[1:]], 0)),
            "attention": tf.reshape(attention, tf.concat([[b, c], tf.shape(attention)[1:]], 0))}


def add_look_signatures(module, parts, config, max_pixels: int, finish=None):
    """Register both complete_look signatures to `module` (which holds `category_table`); `parts` are its
    `shared.TowerParts` of the scene tower.

    finish(query [B, C, d], ids [C]) -> outputs; None: the scene tower's {query, attention}.
    """
    all_ids = tf.range(len(config.categories), dtype=tf.int32)

    def run(image_bytes, ids):
        out = scene_look(parts, shared.preprocess_bytes(image_bytes, config, max_pixels), ids)
        if finish is not None:
            return finish(out["query"], ids)
        return {name: tf.identity(value, name=name) for name, value in out.items()}

    @tf.function(input_signature=[shared.bytes_spec()])
    def complete_look(image_bytes):
        return run(image_bytes, all_ids)

    @tf.function(input_signature=[shared.bytes_spec(), tf.TensorSpec([None], tf.string, name="categories")])
    def complete_look_categories(image_bytes, categories):
        return run(image_bytes, _category_list_ids(module.category_table, categories, config.categories))

    shared.register(module, "complete_look", complete_look,
                    lambda examples: [{"image_bytes": np.array(examples["bytes"], dtype=object)}])
    shared.register(module, "complete_look_categories", complete_look_categories,
                    lambda examples: [{"image_bytes": np.array(examples["bytes"][:1], dtype=object),
                                       "categories": np.array(examples["categories"][-1:], dtype=object)}])
    return module
