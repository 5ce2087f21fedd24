"""tf.Module wrappers that turn the Keras towers into servable SavedModels.

Preprocessing is in the graph and is the training pipeline's own eval view (decode, resize to
resize_size, center crop image_size), so a client sends raw JPEG/PNG bytes. Categories travel as
names and are mapped with a lookup table in the graph. Bad input fails with an assertion whose
message says what is wrong. Image size is bounded: width and height are read from the JPEG/PNG header
(no pixel decoded) and an image above `max_pixels` fails the request with INVALID_ARGUMENT, since a
6000x6000 JPEG would otherwise cost about half a gigabyte per request. The Keras models are
captured by closures rather than tracked as children, so the SavedModel holds only variables, a
table and tf.functions: loading it needs neither keras nor ctl_keras. The towers' Keras graphs are
traced once per module (`TowerParts`) and called by every signature: four signatures of the scene
tower share one backbone and one scene-head function instead of four copies of each. The shared
pieces live in savedmodel/parts.py; every signature is registered there once with its warmup requests.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctl_keras.savedmodel.top_k import PAD_D_STAR, BruteForce  # noqa: F401 (PAD_D_STAR: re-exported)
from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS
from ctl_keras.savedmodel import parts as _parts
from ctl_keras.savedmodel.look import add_look_signatures
# The shared parts (savedmodel/parts.py), under the names this module's builders use.
from ctl_keras.savedmodel.parts import TowerParts, header_size, preprocess_bytes  # noqa: F401 (re-exported)

_bytes_spec, _images_spec, _category_spec = _parts.bytes_spec, _parts.images_spec, _parts.category_spec
_assert_nonempty, _category_table, _category_ids = _parts.assert_nonempty, _parts.category_table, _parts.category_ids
_track = _parts.track

SCENE_OUTPUTS = ("query", "scene_embedding", "attention")
PRODUCT_OUTPUTS = ("product_embedding",)


def _bytes_warmup(with_category: bool):
    """serving_default's warmup: the JPEG alone, then JPEG + PNG (one category name per image)."""
    def requests(examples):
        out = []
        for batch in (examples["bytes"][:1], examples["bytes"]):
            inputs = {"image_bytes": np.array(batch, dtype=object)}
            if with_category:
                names = examples["categories"]
                inputs["category"] = np.array([names[i % len(names)] for i in range(len(batch))], dtype=object)
            out.append(inputs)
        return out
    return requests


def _images_warmup(with_category: bool):
    """predict_images' warmup: the decoded batch; one name per image even with fewer categories."""
    def requests(examples):
        floats, names = examples["floats"], examples["categories"]
        inputs = {"images": floats}
        if with_category:
            inputs["category"] = np.array([names[(i - len(floats)) % len(names)] for i in range(len(floats))],
                                          dtype=object)
        return [inputs]
    return requests


def _with_category_signatures(module, run, config, max_pixels: int):
    """Register `serving_default(image_bytes, category)` and `predict_images(images, category)` calling
    `run(images, category)`: the scene tower and the recommender take the same inputs."""

    @tf.function(input_signature=[_bytes_spec(), _category_spec()])
    def serving_default(image_bytes, category):
        return run(preprocess_bytes(image_bytes, config, max_pixels), category)

    @tf.function(input_signature=[_images_spec(config), _category_spec()])
    def predict_images(images, category):
        with tf.control_dependencies([_assert_nonempty(images, "image")]):
            return run(tf.identity(images), category)

    _parts.register(module, "serving_default", serving_default, _bytes_warmup(True))
    _parts.register(module, "predict_images", predict_images, _images_warmup(True))
    return module


def scene_tower_module(scene_tower, config, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, backbone=None):
    """Module with `serving_default(image_bytes, category)` and `predict_images(images, category)`."""
    module = tf.Module(name="scene_tower")
    _track(module, [scene_tower], backbone)
    module.category_table = _category_table(config.categories)
    parts = TowerParts(scene_tower, config, backbone)

    def run(images, category):
        ids = _category_ids(module.category_table, category, images, config.categories)
        out = parts.scene(images, ids)
        return {name: tf.identity(out[name], name=name) for name in SCENE_OUTPUTS}

    add_look_signatures(module, parts, config, max_pixels)
    return _with_category_signatures(module, run, config, max_pixels)


def product_tower_module(product_tower, config, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, backbone=None):
    """Module with `serving_default(image_bytes)` and `predict_images(images)` -> product_embedding."""
    module = tf.Module(name="product_tower")
    _track(module, [product_tower], backbone)
    parts = TowerParts(product_tower, config, backbone)

    def run(images):
        out = parts.product_head(parts.features(images)["pool5"])
        return {"product_embedding": tf.identity(out["product_embedding"], name="product_embedding")}

    @tf.function(input_signature=[_bytes_spec()])
    def serving_default(image_bytes):
        return run(preprocess_bytes(image_bytes, config, max_pixels))

    @tf.function(input_signature=[_images_spec(config)])
    def predict_images(images):
        with tf.control_dependencies([_assert_nonempty(images, "image")]):
            return run(tf.identity(images))

    _parts.register(module, "serving_default", serving_default, _bytes_warmup(False))
    _parts.register(module, "predict_images", predict_images, _images_warmup(False))
    return module


def recommender_module(scene_tower, config, index, top_k: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, backbone=None):
    """Scene tower + the catalog: (image bytes, category) -> top-K product_ids and d_star per image.

    Exact search by ctl_keras.savedmodel.top_k.BruteForce (the `tf` search backend's module): q·f_p
    over the whole catalog with other categories masked to -inf, then top_k (ties by catalog row).
    Slots beyond a category's size hold product_id "" and d_star PAD_D_STAR; `num_results` says how
    many are real.
    """
    if list(index.categories) != list(config.categories):
        raise ValueError("the catalog index and the model have different category lists")
    module = tf.Module(name="recommender")
    _track(module, [scene_tower], backbone)
    module.category_table = _category_table(config.categories)
    module.catalog = BruteForce(index.embeddings, index.category_ids, index.product_ids)
    k = int(min(top_k, len(index)))
    if k < 1:
        raise ValueError(f"top_k must be >= 1 and the catalog non-empty (top_k={top_k}, {len(index)} products)")

    def search(query, ids):
        """query [N, d], category ids [N] -> top-k of that category per row (padded)."""
        return module.catalog.padded(query, ids, k)

    parts = TowerParts(scene_tower, config, backbone)

    def run(images, category):
        ids = _category_ids(module.category_table, category, images, config.categories)
        return search(parts.scene(images, ids)["query"], ids)

    def look(query, ids):
        """[B, C, d] -> [B, C, K] results: the rows flattened to B*C searches, then reshaped back."""
        b, c = tf.shape(query)[0], tf.shape(query)[1]
        out = search(tf.reshape(query, [b * c, -1]), tf.tile(ids, [b]))
        return {name: tf.reshape(value, tf.concat([[b, c], tf.shape(value)[1:]], 0)) for name, value in out.items()}

    add_look_signatures(module, parts, config, max_pixels, finish=look)
    return _with_category_signatures(module, run, config, max_pixels)


def signatures(module) -> dict:
    """{name: tf.function} of every signature registered on `module` (tf.saved_model.save's map)."""
    return {name: fn for name, (fn, _) in _parts.registered(module).items()}
