"""What every servable module shares: input specs, the in-graph image preprocessing, the category
table, the towers' Keras parts traced once (TowerParts), and the signature registry.

signatures.py (serving_default, predict_images, the recommender) and look.py (complete_look*) both
build on this module and on nothing of each other's but what they call, so there is no import
cycle. Preprocessing is the training pipeline's own eval view (decode, resize to resize_size,
center crop image_size); width and height are read from the JPEG/PNG header (no pixel decoded) and
an image above `max_pixels` fails with INVALID_ARGUMENT. Each signature is registered once, with
its warmup requests (`register`): the SavedModel's signature map and the TF Serving warmup file are
both read from that registry, so a signature cannot be exported without its warmup or vice versa.
"""

from __future__ import annotations

import weakref
from typing import Callable

import keras
import tensorflow as tf

from ctl_keras.config import LOCAL_DIM, POOL5_DIM
from ctl_keras.data.image_decode import decode_user_image
from ctl_keras.data.pipeline import eval_view
from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS

# module -> {signature name: (tf.function, warmup(examples) -> [input dicts])}, in registration order.
# Kept beside the module, not on it: a tf.Module would track the warmup builders as attributes.
_REGISTRY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def register(module, name: str, fn, warmup: Callable[[dict], list[dict]]) -> None:
    """Make `fn` the module's signature `name` (set as module.<name>) with its warmup requests:
    warmup(examples) -> [inputs], examples = {"bytes": [JPEG, PNG], "floats": [2, S, S, 3] array,
    "categories": the model's names} (warmup.example_inputs)."""
    signatures = _REGISTRY.setdefault(module, {})
    if name in signatures:
        raise ValueError(f"signature {name} registered twice on {module.name}")
    setattr(module, name, fn)
    signatures[name] = (fn, warmup)


def registered(module) -> dict:
    """{name: (fn, warmup)} of every signature registered on `module`."""
    return dict(_REGISTRY.get(module, {}))


def bytes_spec():
    return tf.TensorSpec([None], tf.string, name="image_bytes")


def images_spec(config):
    return tf.TensorSpec([None, config.image_size, config.image_size, 3], tf.float32, name="images")


def category_spec():
    return tf.TensorSpec([None], tf.string, name="category")


def assert_nonempty(batch, what: str):
    return tf.debugging.Assert(tf.size(batch) > 0, [f"empty batch: send at least one {what}"])


def header_size(image_bytes):
    """(height, width) int64 of one JPEG or PNG from its header alone (magic already checked).

    JPEG: tf.image.extract_jpeg_shape reads the SOF marker. PNG: the IHDR chunk always comes first,
    width and height as big-endian uint32 at bytes 16..23.
    """
    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64)

    def png():
        # Guard the length: substr past the end would raise its own, less clear, error.
        ihdr = tf.strings.substr(tf.strings.join([image_bytes, b"\0" * 24]), 16, 8)
        width_height = tf.cast(tf.io.decode_raw(ihdr, tf.uint8), tf.int64)
        be = lambda b: b[0] * 2 ** 24 + b[1] * 2 ** 16 + b[2] * 2 ** 8 + b[3]  # noqa: E731
        return tf.stack([be(width_height[4:8]), be(width_height[0:4])])

    return tf.cond(tf.equal(tf.strings.substr(image_bytes, 0, 3), b"\xff\xd8\xff"), jpeg, png)


def _checked_decode(image_bytes, max_pixels: int):
    """decode_user_image after asserting, from the header, that the image has at most max_pixels pixels."""
    height_width = header_size(image_bytes)
    pixels = height_width[0] * height_width[1]
    message = tf.strings.format(
        "image of {} x {} = {} pixels exceeds the limit of " + str(max_pixels)
        + " pixels (ctl_keras.export --max_image_pixels); send a downscaled image",
        [height_width[0], height_width[1], pixels])
    check = tf.debugging.Assert(pixels <= max_pixels, [message])
    with tf.control_dependencies([check]):
        return decode_user_image(tf.identity(image_bytes))  # the builder's rule (data/image_rule.py)


def preprocess_bytes(image_bytes, config, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """[B] JPEG/PNG bytes -> float32 [B, S, S, 3] in 0..255, after checks with clear messages."""
    head3 = tf.strings.substr(image_bytes, 0, 3)
    is_image = tf.logical_or(tf.equal(head3, b"\xff\xd8\xff"),
                             tf.equal(tf.strings.substr(image_bytes, 0, 4), b"\x89PNG"))
    checks = [
        assert_nonempty(image_bytes, "image"),
        tf.debugging.Assert(tf.reduce_all(is_image),
                            ["image_bytes are not a JPEG or PNG image at batch positions:",
                             tf.reshape(tf.where(tf.logical_not(is_image)), [-1])]),
    ]
    with tf.control_dependencies(checks):
        image_bytes = tf.identity(image_bytes)
    size = config.image_size
    return tf.map_fn(lambda b: eval_view(_checked_decode(b, max_pixels), config), image_bytes,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def category_table(categories):
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(categories), tf.string), tf.range(len(categories), dtype=tf.int32))
    return tf.lookup.StaticHashTable(init, default_value=-1)


def category_ids(table, category, batch, categories):
    """Names -> int32 ids; asserts every name is known and that there is one name per image."""
    ids = table.lookup(category)
    checks = [
        tf.debugging.Assert(tf.reduce_all(ids >= 0),
                            ["unknown category name(s):", tf.boolean_mask(category, ids < 0),
                             f"valid names: {', '.join(categories)}"]),
        tf.debugging.Assert(tf.equal(tf.shape(category)[0], tf.shape(batch)[0]),
                            ["need one category per image; got", tf.shape(category)[0],
                             "categories for", tf.shape(batch)[0], "images"]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(ids)


class TowerParts:
    """The Keras parts of the towers as tf.functions with fixed input signatures, each traced once.

    `features(images)` -> {"pool5", "local"} (the backbone); `scene_head(pool5, local, ids)` ->
    {"query", "scene_embedding", "attention"}; `product_head(pool5)` -> {"product_embedding"}. A
    signature that calls them adds one function-call op (inlined by Grappler when served), so every
    signature of a module shares one traced copy of ResNet50.
    """

    def __init__(self, tower, config, backbone=None):
        """`backbone`: run this one instead of the tower's (the bfloat16 copy, model/precision.py)."""
        backbone = tower.get_layer("backbone") if backbone is None else backbone
        g = config.local_grid

        @tf.function(input_signature=[images_spec(config)])
        def features(images):
            out = backbone(images, training=False)
            return {"pool5": out["pool5"], "local": out["local"]}

        @tf.function(input_signature=[tf.TensorSpec([None, POOL5_DIM], tf.float32),
                                      tf.TensorSpec([None, g, g, LOCAL_DIM], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def scene_head(pool5, local, ids):
            return dict(tower.get_layer("scene_head")({"pool5": pool5, "local": local, "category": ids},
                                                      training=False))

        @tf.function(input_signature=[tf.TensorSpec([None, POOL5_DIM], tf.float32)])
        def product_head(pool5):
            return dict(tower.get_layer("product_head")({"pool5": pool5}, training=False))

        self.features, self.scene_head, self.product_head = features, scene_head, product_head

    def scene(self, images, ids):
        """The scene tower: images [B, S, S, 3], ids [B] -> {query, scene_embedding, attention}."""
        features = self.features(images)
        return self.scene_head(features["pool5"], features["local"], ids)


def track(module, keras_models, backbone=None):
    """Track the models' variables (deduplicated) so tf.saved_model.save writes them.

    The tf.Variable inside each Keras variable (`.value`), not the Keras wrapper: the traced functions
    capture the tf.Variables, and a tracked wrapper is saved as a second, separate resource
    ("Variable_N"). The checkpoint then restores the wrappers' copies only, so TF Serving's
    session-based loader (tensorflow::LoadSavedModel) ran the signatures on uninitialized variables
    ("Could not find variable conv3_block1_0_bn/beta"), while tf.saved_model.load resolved them
    (tests/serving/test_cc_loader.py). `backbone`: the one TowerParts runs instead of the towers'."""
    seen, variables = set(), []
    if backbone is not None:  # the towers' own backbone is not in the graph: save the one that is
        seen = {id(v) for m in keras_models for v in m.get_layer("backbone").variables}
        keras_models = [backbone, *keras_models]
    for model in keras_models:
        for v in model.variables:
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v.value if isinstance(v, keras.Variable) else v)
    module.model_variables = variables
