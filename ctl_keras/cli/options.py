"""The one flag surface of the commands that train or evaluate: flags generated from Config's fields.

    from ctl_keras.cli import options as config_flags

    def define_flags():
        config_flags.define_dataset_flags()            # --dataset, --data_dir, --smoke
        config_flags.define_config_flags()             # one flag per training field of Config
    ...
    spec, data_dir = config_flags.resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
    config = config_flags.config_from_flags(FLAGS, spec)

Every flag defaults to None, meaning "the dataset's value" (its spec's `defaults`, else Config's);
every check lives in Config itself (config.py) plus the few here that need the file system; the
derived values (resize_size from image_size) are made here once. `--flagfile=run.flags` (absl) keeps
a run's settings in a file, one `--name=value` a line.

The dataset: a built directory's manifest holds the resolved spec, so `--data_dir=D` alone names the
dataset; `--dataset` (a built-in name or a spec file) is needed only to build or to pick the default
directory tf_records/<name>, and one that disagrees with D's manifest is refused.
"""

from __future__ import annotations

import dataclasses
import typing

from ctl_keras import config as config_lib
from ctl_keras import spec as spec_lib
from ctl_keras.data.resolve import manifest_spec, resolve_dataset  # noqa: F401 (the commands' use)
from ctl_keras.config import check_backbone_weights

# Config fields a training or evaluating command may override, with their help text.
HELP = {
    "variant": "Model variant: " + ", ".join(config_lib.VARIANTS) + ".",
    "epochs": "Epochs; may be raised on resume.",
    "batch_size": "Global batch size, split over the replicas.",
    "learning_rate": "Adam learning rate.",
    "lr_schedule": "constant (the paper) or cosine: decay to 0 over --epochs (steadier late epochs; raising "
                   "--epochs on resume stretches the rest of the curve).",
    "embedding_dim": "Embedding size d.",
    "hidden_dim": "Hidden width of the heads g.",
    "dropout": "Dropout rate of the heads, in [0, 1).",
    "margin": "Triplet hinge margin alpha.",
    "image_size": "Square input size; train views are random crops of a resize to 8/7 of it (unless --resize_size).",
    "resize_size": "Train views: resize to this, then a random --image_size crop (default: 8/7 of image_size).",
    "local_grid": "Regions per side of the local embedding map (7: the paper's 49 regions).",
    "backbone_weights": "imagenet, none, or a path to a ResNet50 (include_top=False) .h5 file.",
    "eval_every": "Validate every N epochs (and at the last).",
    "seed": "Seed of weights, dropout and data order.",
    "num_views": "Augmented views per train image in the feature cache.",
    "shuffle_buffer": "tf.data shuffle buffer of the image path.",
    "topk_max": "Largest K of the Top-K accuracy curve.",
}
CHOICES = {"variant": config_lib.VARIANTS, "lr_schedule": config_lib.LR_SCHEDULES}
FIELDS = tuple(HELP)


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(config_lib.Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_lib.Config)}


def define_config_flags(fields=FIELDS, flag_values=None) -> None:
    """One absl flag per Config field in `fields`, typed from the dataclass, default None."""
    from absl import flags  # noqa: PLC0415

    values = flag_values or flags.FLAGS
    types = _field_types()
    for name in fields:
        help_text = HELP[name] + " Default: the dataset's."
        if name in CHOICES:
            flags.DEFINE_enum(name, None, list(CHOICES[name]), help_text, flag_values=values)
        elif types[name] is int:
            flags.DEFINE_integer(name, None, help_text, flag_values=values)
        elif types[name] is float:
            flags.DEFINE_float(name, None, help_text, flag_values=values)
        else:
            flags.DEFINE_string(name, None, help_text, flag_values=values)


def define_dataset_flags(flag_values=None, *, smoke: bool = True) -> None:
    from absl import flags  # noqa: PLC0415

    values = flag_values or flags.FLAGS
    flags.DEFINE_string("dataset", None, "A built-in dataset (" + ", ".join(spec_lib.builtin_names()) + ") or a "
                        "dataset spec file. Default: the one --data_dir was built from, else synthetic (generated "
                        "and built when its directory has no manifest).", flag_values=values)
    flags.DEFINE_string("data_dir", None, "Built dataset directory (default: tf_records/<dataset>).",
                        flag_values=values)
    if smoke:
        flags.DEFINE_bool("smoke", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks.", flag_values=values)


def overrides_from_flags(values, fields=FIELDS) -> dict:
    """The Config overrides the user set, with the derived resize_size."""
    overrides = {name: getattr(values, name) for name in fields if getattr(values, name, None) is not None}
    if "image_size" in overrides and "resize_size" not in overrides:
        overrides["resize_size"] = overrides["image_size"] * 8 // 7  # 224 -> 256 as in the paper
    check_backbone_weights(overrides.get("backbone_weights"))
    return overrides


def config_from_flags(values, spec, fields=FIELDS, **extra) -> config_lib.Config:
    """get_config(spec, --smoke) with the flags' overrides (and `extra`); every value checked here,
    before TensorFlow starts and before anything is written."""
    overrides = {**overrides_from_flags(values, fields), **extra}
    return config_lib.get_config(spec, smoke=bool(getattr(values, "smoke", False)), **overrides)
