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
tower share one backbone and one scene-head function instead of four copies of each.
"""

from __future__ import annotations

import tensorflow as tf

from ctl_keras.config import LOCAL_DIM, POOL5_DIM
from ctl_keras.data.pipeline import decode_image, eval_view
from ctl_keras.retrieval.tf_search import PAD_D_STAR, BruteForce  # noqa: F401 (PAD_D_STAR: re-exported)
from ctl_keras.serving import DEFAULT_MAX_IMAGE_PIXELS

SCENE_OUTPUTS = ("query", "scene_embedding", "attention")
PRODUCT_OUTPUTS = ("product_embedding",)


def _bytes_spec():
    return tf.TensorSpec([None], tf.string, name="image_bytes")


def _images_spec(config):
    return tf.TensorSpec([None, config.image_size, config.image_size, 3], tf.float32, name="images")


def _category_spec():
    return tf.TensorSpec([None], tf.string, name="category")


def _assert_nonempty(batch, what: str):
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
    """decode_image after asserting, from the header, that the image has at most max_pixels pixels."""
    height_width = header_size(image_bytes)
    pixels = height_width[0] * height_width[1]
    message = tf.strings.format(
        "image of {} x {} = {} pixels exceeds the limit of " + str(max_pixels)
        + " pixels (ctl_keras.export --max_image_pixels); send a downscaled image",
        [height_width[0], height_width[1], pixels])
    check = tf.debugging.Assert(pixels <= max_pixels, [message])
    with tf.control_dependencies([check]):
        return decode_image(tf.identity(image_bytes))


def preprocess_bytes(image_bytes, config, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """[B] JPEG/PNG bytes -> float32 [B, S, S, 3] in 0..255, after checks with clear messages."""
    head3 = tf.strings.substr(image_bytes, 0, 3)
    is_image = tf.logical_or(tf.equal(head3, b"\xff\xd8\xff"),
                             tf.equal(tf.strings.substr(image_bytes, 0, 4), b"\x89PNG"))
    checks = [
        _assert_nonempty(image_bytes, "image"),
        tf.debugging.Assert(tf.reduce_all(is_image),
                            ["image_bytes are not a JPEG or PNG image at batch positions:",
                             tf.reshape(tf.where(tf.logical_not(is_image)), [-1])]),
    ]
    with tf.control_dependencies(checks):
        image_bytes = tf.identity(image_bytes)
    size = config.image_size
    return tf.map_fn(lambda b: eval_view(_checked_decode(b, max_pixels), config), image_bytes,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def _category_table(categories):
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(categories), tf.string), tf.range(len(categories), dtype=tf.int32))
    return tf.lookup.StaticHashTable(init, default_value=-1)


def _category_ids(table, category, batch, categories):
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

    def __init__(self, tower, config):
        backbone = tower.get_layer("backbone")
        g = config.local_grid

        @tf.function(input_signature=[_images_spec(config)])
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


def _track(module, keras_models):
    """Track the models' variables (deduplicated) so tf.saved_model.save writes them."""
    seen, variables = set(), []
    for model in keras_models:
        for v in model.variables:
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
    module.model_variables = variables


def _with_category_signatures(module, run, config, max_pixels: int):
    """Attach `serving_default(image_bytes, category)` and `predict_images(images, category)` calling
    `run(images, category)`: the scene tower and the recommender take the same inputs."""

    @tf.function(input_signature=[_bytes_spec(), _category_spec()])
    def serving_default(image_bytes, category):
        return run(preprocess_bytes(image_bytes, config, max_pixels), category)

    @tf.function(input_signature=[_images_spec(config), _category_spec()])
    def predict_images(images, category):
        with tf.control_dependencies([_assert_nonempty(images, "image")]):
            return run(tf.identity(images), category)

    module.serving_default, module.predict_images = serving_default, predict_images
    return module


def scene_tower_module(scene_tower, config, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """Module with `serving_default(image_bytes, category)` and `predict_images(images, category)`."""
    module = tf.Module(name="scene_tower")
    _track(module, [scene_tower])
    module.category_table = _category_table(config.categories)
    parts = TowerParts(scene_tower, config)

    def run(images, category):
        ids = _category_ids(module.category_table, category, images, config.categories)
        out = parts.scene(images, ids)
        return {name: tf.identity(out[name], name=name) for name in SCENE_OUTPUTS}

    from ctl_keras.serving.look import add_look_signatures

    add_look_signatures(module, parts, config, max_pixels)
    return _with_category_signatures(module, run, config, max_pixels)


def product_tower_module(product_tower, config, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """Module with `serving_default(image_bytes)` and `predict_images(images)` -> product_embedding."""
    module = tf.Module(name="product_tower")
    _track(module, [product_tower])
    parts = TowerParts(product_tower, config)

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

    module.serving_default, module.predict_images = serving_default, predict_images
    return module


def recommender_module(scene_tower, config, index, top_k: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """Scene tower + the catalog: (image bytes, category) -> top-K product_ids and d_star per image.

    Exact search by ctl_keras.retrieval.tf_search.BruteForce (the `tf` search backend's module): q·f_p
    over the whole catalog with other categories masked to -inf, then top_k (ties by catalog row).
    Slots beyond a category's size hold product_id "" and d_star PAD_D_STAR; `num_results` says how
    many are real.
    """
    if list(index.categories) != list(config.categories):
        raise ValueError("the catalog index and the model have different category lists")
    module = tf.Module(name="recommender")
    _track(module, [scene_tower])
    module.category_table = _category_table(config.categories)
    module.catalog = BruteForce(index.embeddings, index.category_ids, index.product_ids)
    k = int(min(top_k, len(index)))
    if k < 1:
        raise ValueError(f"top_k must be >= 1 and the catalog non-empty (top_k={top_k}, {len(index)} products)")

    def search(query, ids):
        """query [N, d], category ids [N] -> top-k of that category per row (padded)."""
        return module.catalog.padded(query, ids, k)

    parts = TowerParts(scene_tower, config)

    def run(images, category):
        ids = _category_ids(module.category_table, category, images, config.categories)
        return search(parts.scene(images, ids)["query"], ids)

    def look(query, ids):
        """[B, C, d] -> [B, C, K] results: the rows flattened to B*C searches, then reshaped back."""
        b, c = tf.shape(query)[0], tf.shape(query)[1]
        out = search(tf.reshape(query, [b * c, -1]), tf.tile(ids, [b]))
        return {name: tf.reshape(value, tf.concat([[b, c], tf.shape(value)[1:]], 0)) for name, value in out.items()}

    from ctl_keras.serving.look import add_look_signatures

    add_look_signatures(module, parts, config, max_pixels, finish=look)
    return _with_category_signatures(module, run, config, max_pixels)


def signatures(module) -> dict:
    out = {"serving_default": module.serving_default, "predict_images": module.predict_images}
    for name in ("complete_look", "complete_look_categories"):  # scene tower and recommender only
        if hasattr(module, name):
            out[name] = getattr(module, name)
    return out
