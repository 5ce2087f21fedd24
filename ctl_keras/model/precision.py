"""The backbone's precision: float32 (the default, bit-identical to every earlier export and cache) or
bfloat16 (ResNet50 with its BatchNorms folded, bfloat16 variables and convolutions,
float32 outputs), and `auto`, which picks bfloat16 only where the hardware computes it natively.

Why bfloat16 only on such hardware: without native bf16 instructions the convolutions are emulated and run
slower than float32. Why float32 stays the default: `auto` would silently change the numbers a run produces
on a bf16 machine; the agreement check (`agreement`) says how much, and the user decides.
"""

from __future__ import annotations

import random

import keras
import numpy as np
from absl import logging

from ctl_keras.utils.cpu_features import cpu_has_bf16, reported_cpu_flags

from ctl_keras.config import BACKBONE_PRECISIONS as PRECISIONS
__all__ = ["PRECISIONS", "cpu_has_bf16", "reported_cpu_flags", "resolve", "resolve_and_log", "bf16_backbone"]


def gpu_has_bf16(capabilities=None) -> bool:
    """True when a visible GPU has compute capability >= 8.0 (Ampere and later: bf16 tensor cores).
    `capabilities`: [(major, minor)] for tests; default: asked of TensorFlow."""
    if capabilities is None:
        import tensorflow as tf  # noqa: PLC0415

        capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
                        for gpu in tf.config.list_physical_devices("GPU")]
    return any(tuple(c) >= (8, 0) for c in capabilities)


def resolve(choice: str, cpuinfo_text: str | None = None, gpu_capabilities=None) -> tuple[str, str]:
    """(float32 | bfloat16, why) for a --backbone_precision value; `auto` looks at the GPU, then the CPU."""
    if choice not in PRECISIONS:
        raise ValueError(f"--backbone_precision must be one of {', '.join(PRECISIONS)}, got {choice!r}")
    if choice != "auto":
        return choice, "as asked"
    if gpu_has_bf16(gpu_capabilities):
        return "bfloat16", "auto: a GPU with compute capability >= 8.0"
    if cpu_has_bf16(cpuinfo_text):
        return "bfloat16", f"auto: CPU flags {reported_cpu_flags(cpuinfo_text)}"
    return "float32", f"auto: no native bf16 (CPU flags {reported_cpu_flags(cpuinfo_text)}, no GPU >= 8.0)"


def resolve_and_log(choice: str, what: str) -> str:
    """resolve() with the one log line saying what was picked and why."""
    precision, why = resolve(choice)
    logging.info("%s: backbone precision %s (%s)", what, precision, why)
    if choice == "bfloat16" and not cpu_has_bf16() and not gpu_has_bf16():
        # Measured with oneDNN held to AVX512_CORE_VNNI: 0.41x float32; held to AVX2 its bf16 convolution fails.
        logging.warning("%s: bfloat16 asked on hardware without native bf16 (CPU flags %s): expect it slower "
                        "than float32, or to fail on a CPU without AVX-512; --backbone_precision=auto picks "
                        "float32 here", what, reported_cpu_flags())
    return precision


@keras.saving.register_keras_serializable(package="ctl_keras")
class FoldedBatchNorm(keras.layers.Layer):
    """Where a BatchNormalization was: its affine map now lives in the convolution before it."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _clone_layer(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return FoldedBatchNorm(name=layer.name)
    return layer.__class__.from_config(layer.get_config())


def bf16_backbone(backbone: keras.Model) -> keras.Model:
    """A copy of the frozen `backbone` whose ResNet50 computes in bfloat16, inputs and outputs float32
    (the preprocessing and the pools stay float32 layers).

    Each inference-mode BatchNormalization is folded into the convolution before it (kernel x gamma /
    sqrt(var + eps), bias (b - mean) x that + beta, computed in float64): under mixed_bfloat16 Keras runs
    BatchNormalization in float32, and the casts around its 53 layers cost more than they keep (ResNet50
    at 112 px, batch 32 on an AVX-512 BF16 CPU: 1.4x float32 unfolded, 2.0x folded, same agreement).
    The folded weights are held as bfloat16 variables (the `bfloat16` policy, not `mixed_bfloat16`): the
    same numbers mixed_bfloat16 computes (it casts float32 variables to bfloat16 on every call), without
    that cast per call, at half the memory. A batch of 1 stays slower than float32 either way (about 0.85x
    here): the gain is in batches (2.0x at 32), which the look service and the cache build make. The copy's random initialization does not move Python's or numpy's
    global RNG (saved and restored), so building it changes nothing that is seeded after it.
    """
    from ctl_keras.model.backbone import assemble_backbone  # noqa: PLC0415

    size = backbone.input.shape[1]
    extractor = backbone.get_layer("resnet50_features")
    pool = backbone.get_layer("local").pool_size[0]
    state, np_state = random.getstate(), np.random.get_state()
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("bfloat16")
        resnet = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
        folded = keras.models.clone_model(resnet, clone_function=_clone_layer)
    finally:
        keras.config.set_dtype_policy(previous)
        random.setstate(state)
        np.random.set_state(np_state)
    for layer in folded.layers:
        if not layer.weights:
            continue
        if not isinstance(layer, keras.layers.Conv2D):
            raise ValueError(f"cannot fold {layer.name} ({type(layer).__name__}) into a bfloat16 backbone")
        kernel, bias = (np.asarray(w, np.float64) for w in extractor.get_layer(layer.name).get_weights())
        bn = extractor.get_layer(layer.name[: -len("_conv")] + "_bn")
        gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
        scale = gamma / np.sqrt(var + bn.epsilon)
        layer.set_weights([(kernel * scale).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)])
    # bfloat16 policy, float32 ends: the Input of the copy is float32, and its first layer casts.
    return assemble_backbone(folded, size, pool)
