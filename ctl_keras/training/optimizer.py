"""The optimizer of every learned method: Adam whose per-variable update is one fused TensorFlow
kernel (`FusedAdam`), and our trainer's factory for it (`make_optimizer`: schedule, loss scaling).

`keras.optimizers.Adam` updates each variable with about twenty small ops (casts, powers, two
`assign_add`, a square, a sqrt, a divide, an `assign_sub`), each a separate pass over the variable.
`FusedAdam` computes the same formula with `tf.raw_ops.ResourceApplyAdam` (the kernel tf.keras 2 used):
one op and one pass per variable. On a GPU that is one kernel launch instead of a dozen per variable
(`python benchmarks/train_step.py --parts=ops` counts the step's ops with either optimizer).

The formula is keras.optimizers.Adam's:
    alpha = lr·√(1−β₂ᵗ)/(1−β₁ᵗ);  m += (g−m)(1−β₁);  v += (g²−v)(1−β₂);  θ −= alpha·m/(√v + ε)
The variables (iterations, learning_rate, momentums, velocities) are keras.optimizers.Adam's, so
checkpoints are interchangeable. The results differ from keras.optimizers.Adam by float rounding only
(tested). Sparse gradients and amsgrad fall back to the parent's update.

The slots are read through keras.optimizers.Adam's private attributes (`_momentums`, `_velocities`,
`_get_variable_index`; Keras 3.12-3.15). That contract is checked when the optimizer is built
(`check_adam_contract`, and tests/training/test_optimizer.py), so a Keras that changes it fails at
once with one line naming the attribute, never with wrong updates; the tested Keras is constraints.txt's.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ctl_keras.config import Config


@keras.saving.register_keras_serializable(package="ctl_keras")
class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam, one fused kernel per variable update (TensorFlow backend).

    Args: those of keras.optimizers.Adam.

    Example:
        optimizer = FusedAdam(learning_rate=1e-4)
        optimizer.apply_gradients(zip(grads, variables))
    """

    def build(self, var_list):
        super().build(var_list)
        check_adam_contract(self, var_list)

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index].value, self._velocities[index].value
        # `variable` is a tf.Variable (one replica's component inside a strategy's update()); the
        # slots' .handle is that replica's component too.
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype), use_locking=False)


def check_adam_contract(optimizer: keras.optimizers.Adam, var_list) -> None:
    """RuntimeError (one line) unless the built `optimizer` has one momentum and one velocity per
    variable, shaped like it, found by `_get_variable_index`, and tracked in `optimizer.variables`
    (so they are checkpointed): what FusedAdam.update_step reads."""
    def broken(what: str):
        return RuntimeError(f"keras {keras.__version__} changed keras.optimizers.Adam's slots ({what}); "
                            "FusedAdam (ctl_keras/training/optimizer.py) reads them: update it, or install "
                            "the keras version of constraints.txt")

    try:
        momentums, velocities = optimizer._momentums, optimizer._velocities
        indices = [optimizer._get_variable_index(v) for v in var_list]
    except (AttributeError, KeyError, TypeError) as err:
        raise broken(f"{type(err).__name__}: {err}") from None
    if len(momentums) != len(var_list) or len(velocities) != len(var_list):
        raise broken(f"{len(momentums)} momentums, {len(velocities)} velocities for {len(var_list)} variables")
    if sorted(indices) != list(range(len(var_list))):
        raise broken(f"_get_variable_index gave {indices}")
    tracked = {id(v) for v in optimizer.variables}
    for variable, index in zip(var_list, indices):
        for slot in (momentums[index], velocities[index]):
            if tuple(slot.shape) != tuple(variable.shape) or id(slot) not in tracked:
                raise broken(f"slot {getattr(slot, 'path', slot)} does not match variable {variable.path}")


def mixed_precision_policy() -> str:
    """mixed_float16 where float16 matmuls are fast (a GPU), else mixed_bfloat16 (CPUs, TPUs)."""
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def make_optimizer(config: Config, steps_per_epoch: int | None = None):
    """FusedAdam at config.learning_rate; under mixed_float16
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
    optimizer = FusedAdam(learning_rate=learning_rate)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
