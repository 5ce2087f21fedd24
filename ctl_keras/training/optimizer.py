"""The optimizer of our trainer (`make_optimizer`: Adam, the learning-rate schedule, loss scaling)."""

from __future__ import annotations

import keras
import tensorflow as tf

from ctl_keras.config import Config


def mixed_precision_policy() -> str:
    """mixed_float16 where float16 matmuls are fast (a GPU), else mixed_bfloat16 (CPUs, TPUs)."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def make_optimizer(config: Config, steps_per_epoch: int | None = None):
    """keras.optimizers.Adam at config.learning_rate; under mixed_float16
    wrapped in loss scaling (float16 gradients underflow without it).

    config.lr_schedule "cosine" decays the rate to 0 over config.epochs × `steps_per_epoch` steps. The
    schedule is a function of the optimizer's step count, which the checkpoint holds, so a resume continues
    it exactly. Another --epochs would stretch the rest of the curve (the rate would jump at the resume),
    so under cosine a resume must keep epochs (config.schedule_fields).
    """
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        if not steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(f"lr_schedule cosine needs the steps per epoch, got {steps_per_epoch}")
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, config.epochs * steps_per_epoch)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
