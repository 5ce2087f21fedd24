"""Frozen ResNet50 feature extractor: RGB 0..255 images -> pool5 and the pooled conv4 map.

The ResNet50 ("caffe") preprocessing lives inside the model, so every caller — training, the feature
cache and the exported towers — feeds the same raw pixel values.
"""

from __future__ import annotations

import os

import keras

# The file Keras's own ResNet50(weights="imagenet", include_top=False) downloads and caches (origin
# and md5 as in keras/src/applications/resnet.py; copied, not imported: that module is private API).
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
IMAGENET_HASH = "4d473c1dd8becc155b73f8504c6f6626"
CONV4_LAYER = "conv4_block6_out"
# conv4 is 1/16 of the input side in Keras's ResNet50.
CONV4_STRIDE = 16
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="ctl_keras")
class CaffePreprocess(keras.layers.Layer):
    """keras.applications.resnet50.preprocess_input as a layer: RGB 0..255 -> BGR, mean-subtracted."""

    def call(self, images):
        bgr = keras.ops.flip(images, axis=-1)
        return bgr - keras.ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def keras_cache_path() -> str:
    """Where the ImageNet weights are looked up; read at call time so KERAS_HOME set late still counts."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", IMAGENET_FILE)


def pool_size_for_grid(image_size: int, local_grid: int) -> int:
    """The average-pool size that takes the conv4 map to local_grid x local_grid."""
    if image_size % CONV4_STRIDE:
        raise ValueError(f"image_size {image_size} is not a multiple of {CONV4_STRIDE} (the conv4 stride)")
    side = image_size // CONV4_STRIDE
    if local_grid <= 0 or side % local_grid:
        raise ValueError(
            f"image_size {image_size} gives a {side}x{side} conv4 map, which cannot be average-pooled "
            f"to a {local_grid}x{local_grid} grid"
        )
    return side // local_grid


def _imagenet_weights_file() -> str:
    path = keras_cache_path()
    if os.path.exists(path):
        # Use the cached file as is: get_file would re-download one whose hash it does not know.
        return path
    try:
        return keras.utils.get_file(
            IMAGENET_FILE,
            IMAGENET_ORIGIN,
            cache_dir=os.path.dirname(os.path.dirname(path)),
            cache_subdir="models",
            file_hash=IMAGENET_HASH,
        )
    except Exception as err:  # any download failure (no network, refused, bad hash) means the same
        reason = " ".join(str(err).split())[:200]
        raise FileNotFoundError(
            f"ResNet50 ImageNet weights are not in the Keras cache ({path}) and could not be downloaded "
            f"({type(err).__name__}: {reason}); put that file there, or pass --backbone_weights=PATH "
            f"to a local .h5 copy, or --backbone_weights=none for random frozen weights"
        ) from None


def resolve_weights(weights: str) -> str | None:
    """The .h5 file to load for `weights` ("imagenet", "none" or a path), None for random init.

    Checked before ResNet50 is built, so a bad flag fails at once.
    """
    if weights == "none":
        return None  # random init; the caller seeds it with keras.utils.set_random_seed
    path = _imagenet_weights_file() if weights == "imagenet" else os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"backbone weights file {path} does not exist; pass --backbone_weights=imagenet, =none or "
            f"=PATH to a ResNet50 (include_top=False) .h5 file"
        )
    if not (path.endswith(".h5") or path.endswith(".hdf5")):
        raise ValueError(f"backbone weights file {path} is not an .h5 file")
    return path


def _load_resnet_weights(resnet: keras.Model, path: str) -> None:
    try:
        resnet.load_weights(path)
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(
            f"could not load ResNet50 (include_top=False) weights from {path}: {type(err).__name__}: {reason}"
        ) from None


def build_backbone(image_size: int, local_grid: int, weights: str = "imagenet") -> keras.Model:
    """Frozen backbone: input `image` [B,S,S,3] RGB 0..255 -> {"pool5": [B,2048], "local": [B,g,g,1024]}.

    `weights` is "imagenet" (Keras download cache), "none" (random) or a path to a ResNet50 .h5 file.
    """
    pool = pool_size_for_grid(image_size, local_grid)
    weights_path = resolve_weights(weights)

    resnet = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(image_size, image_size, 3)
    )
    if weights_path is not None:
        _load_resnet_weights(resnet, weights_path)
    return assemble_backbone(resnet, image_size, pool)


def assemble_backbone(resnet: keras.Model, image_size: int, pool: int) -> keras.Model:
    """The frozen backbone graph around a ResNet50 (float32, or bfloat16 for model/precision.py): the
    preprocessing and the pools are float32 layers, so the outputs are float32 whatever ResNet computes in."""
    # Section 1: ResNet50 exposing conv4 next to the last stage.
    extractor = keras.Model(
        resnet.input,
        {"conv4": resnet.get_layer(CONV4_LAYER).output, "conv5": resnet.output},
        name="resnet50_features",
    )

    # Section 2: the frozen backbone graph. trainable=False (set below) is what keeps BatchNorm on its
    # moving statistics even when an outer model is called with training=True.
    image = keras.Input((image_size, image_size, 3), name="image")
    features = extractor(CaffePreprocess(name="caffe_preprocess", dtype="float32")(image), training=False)
    pool5 = keras.layers.GlobalAveragePooling2D(name="pool5", dtype="float32")(features["conv5"])
    local = keras.layers.AveragePooling2D(pool_size=pool, strides=pool, name="local", dtype="float32")(
        features["conv4"])
    backbone = keras.Model(image, {"pool5": pool5, "local": local}, name="backbone")
    backbone.trainable = False
    return backbone


def conv4_model(backbone: keras.Model) -> keras.Model:
    """The frozen backbone up to the full conv4 map: image [B,S,S,3] RGB 0..255 -> [B,S/16,S/16,1024]."""
    extractor = backbone.get_layer("resnet50_features")
    image = keras.Input(backbone.input.shape[1:], name="image")
    conv4 = keras.Model(extractor.input, extractor.get_layer(CONV4_LAYER).output)
    return keras.Model(image, conv4(backbone.get_layer("caffe_preprocess")(image), training=False), name="conv4")


def conv5_stage(backbone: keras.Model) -> keras.Model:
    """A new, trainable copy of ResNet50's conv5 stage holding `backbone`'s weights:
    conv4 map [B,h,h,1024] -> conv5 map [B,h/2,h/2,2048]. Training it leaves `backbone` unchanged."""
    extractor = backbone.get_layer("resnet50_features")
    size = extractor.input.shape[1]
    resnet = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
    for layer in resnet.layers:
        if layer.weights:
            layer.set_weights(extractor.get_layer(layer.name).get_weights())
    return keras.Model(resnet.get_layer(CONV4_LAYER).output, resnet.output, name="conv5_stage")


def seeded_backbone(config) -> keras.Model:
    """The frozen backbone exactly as build_ctl makes it for `config` (same seed, so the same random
    weights for backbone_weights="none"): what baselines share with the CTL models."""
    keras.utils.set_random_seed(config.seed)
    return build_backbone(config.image_size, config.local_grid, config.backbone_weights)
