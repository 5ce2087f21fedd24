"""Keras BatchNormalization that trains through TensorFlow's fused kernel when there is one replica."""

from __future__ import annotations

import keras
import tensorflow as tf


def _one_replica() -> bool:
    context = tf.distribute.get_replica_context()
    return context is None or context.num_replicas_in_sync == 1


def _gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


@keras.saving.register_keras_serializable(package="ctl_keras")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step on one replica can be one fused kernel.

    Keras's training path computes the batch moments with a dozen small ops (with `synchronized=True`
    it also counts the rows with a `ones_like` of the whole input), and their gradient with a dozen
    more: on a GPU, a kernel launch each. Fused, this layer runs `FusedBatchNormV3` on the [M, 1, 1, C]
    view of a [M, C] input instead: one kernel forward, one backward (cuDNN's on a GPU). Same weights,
    same normalisation (biased batch variance), same moving-average update, so checkpoints and results
    are interchangeable up to float rounding (tests/model/test_batch_norm.py). With several replicas,
    at inference, or for inputs other than [M, C] it is Keras's layer unchanged, `synchronized`
    included.

    Args:
        fused: None (default) fuses when a GPU is visible; True or False forces it. On CPU the fused
            kernel is slower here (forward + backward on [784, 256]: 0.67 ms vs Keras's 0.55–0.59 ms,
            benchmarks/batch_norm.py), so CPU training keeps Keras's ops and their float order.
        **kwargs: those of `keras.layers.BatchNormalization`.
    """

    def __init__(self, fused: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fused = fused

    def _fused(self, inputs, training, mask) -> bool:
        if not (training and self.trainable and mask is None and not self.renorm and self.scale and self.center
                and len(inputs.shape) == 2 and self.axis in (-1, 1)):
            return False  # inference and other shapes return here, before the device query
        return (_gpu_visible() if self.fused is None else self.fused) and _one_replica()

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, "float32")
        rows = tf.cast(tf.shape(x)[0], "float32")
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.reshape(x, [-1, 1, 1, x.shape[-1]]), tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # The kernel returns the Bessel-corrected variance for the moving average; Keras's layer
        # averages the biased one (what both normalise by), so this does too.
        variance = variance * (rows - 1.0) / tf.maximum(rows, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(tf.reshape(y, tf.shape(x)), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}
