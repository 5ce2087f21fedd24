"""The one flag surface of every command: each flag name is defined once, here, in a named group.

    from ctl_keras.cli import options

    def define_flags():
        options.define("dataset", "data_dir", "smoke", *options.FIELDS, "model_dir")
        options.define("model_dir", "which", "out", help_texts={"out": "Where to write the JSON."})
        options.define("k", defaults={"k": 5})       # a command's own default or help, same type and checks
    ...
    spec, data_dir = options.resolve_dataset(FLAGS.dataset, FLAGS.data_dir)
    config = options.config_from_flags(FLAGS, spec)

The groups (GROUPS: data, model, output, serving, build, analysis, training) are what `ctl COMMAND
--help` shows (cli/help.py). Flags only one command has stay in that command's module. The Config
fields' flags are generated from the dataclass: every one defaults to None, meaning "the dataset's
value" (its spec's `defaults`, else Config's); every check lives in Config itself (config.py) plus the
few here that need the file system; the derived values (resize_size from image_size) are made here
once. `--flagfile=run.flags` (absl) keeps a run's settings in a file, one `--name=value` a line.

The dataset: a built directory's manifest holds the resolved spec, so `--data_dir=D` alone names the
dataset; `--dataset` (a built-in name or a spec file) is needed only to build or to pick the default
directory tf_records/<name>, and one that disagrees with D's manifest is refused.
"""

from __future__ import annotations

import dataclasses
import typing

from absl import flags

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
# absl bounds of Config fields a command other than train defines too (recommend's --batch_size); Config checks
# the rest, with its own message.
LOWER_BOUNDS = {"batch_size": 1}
CHOICES = {"variant": config_lib.VARIANTS, "lr_schedule": config_lib.LR_SCHEDULES}
FIELDS = tuple(HELP)


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(config_lib.Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_lib.Config)}


def _backends() -> list[str]:
    from ctl_keras.retrieval.backend import BACKENDS  # noqa: PLC0415 (numpy only; not for train's flags)

    return list(BACKENDS)


def _datasets() -> str:
    return "A built-in dataset (" + ", ".join(spec_lib.builtin_names()) + ") or a dataset spec file."


# The shared flags: name -> (group, default, help, definer(name's default, help, flag_values)). Type, name
# and absl bounds live here once; a command may pass its own default or help (define's overrides).
SHARED = {
    "dataset": ("data", None, lambda: _datasets() + " Default: the one --data_dir was built from, else synthetic "
                "(generated and built when its directory has no manifest).",
                lambda d, h, v: flags.DEFINE_string("dataset", d, h, flag_values=v)),
    "data_dir": ("data", None, "Built dataset directory (default: tf_records/<dataset>).",
                 lambda d, h, v: flags.DEFINE_string("data_dir", d, h, flag_values=v)),
    "smoke": ("data", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks.",
              lambda d, h, v: flags.DEFINE_bool("smoke", d, h, flag_values=v)),
    "split": ("data", "test", "Split to evaluate.",
              lambda d, h, v: flags.DEFINE_enum("split", d, ["val", "test"], h, flag_values=v)),
    "num_scenes": ("data", None, "Number of scenes.",
                   lambda d, h, v: flags.DEFINE_integer("num_scenes", d, h, lower_bound=1, flag_values=v)),
    "model_dir": ("model", None, "Trained model directory (config.json + best.weights.h5).",
                  lambda d, h, v: flags.DEFINE_string("model_dir", d, h, flag_values=v)),
    "which": ("model", "best", "Which head weights of model_dir to load.",
              lambda d, h, v: flags.DEFINE_enum("which", d, ["best", "last"], h, flag_values=v)),
    "full_scene": ("model", False, "Train on uncropped scenes (the paper's 'full images' rows); validation and "
                   "test are always on cropped scenes.",
                   lambda d, h, v: flags.DEFINE_bool("full_scene", d, h, flag_values=v)),
    "feature_cache": ("model", None, "Use the frozen-backbone feature cache.",
                      lambda d, h, v: flags.DEFINE_bool("feature_cache", d, h, flag_values=v)),
    "feature_cache_dir": ("model", None, "Directory of the --feature_cache (default: under "
                          "<data_dir>/feature_cache/).",
                          lambda d, h, v: flags.DEFINE_string("feature_cache_dir", d, h, flag_values=v)),
    "methods": ("comparison", None, "Methods to compare.",
                lambda d, h, v: flags.DEFINE_list("methods", d, h, flag_values=v)),
    "out": ("output", None, "Output directory.",
            lambda d, h, v: flags.DEFINE_string("out", d, h, flag_values=v)),
    "export_dir": ("serving", None, "Export dir (scene_tower/, product_tower/, recommender/).",
                   lambda d, h, v: flags.DEFINE_string("export_dir", d, h, flag_values=v)),
    "index": ("serving", None, "Catalog index path stem (STEM.npz + STEM.json).",
              lambda d, h, v: flags.DEFINE_string("index", d, h, flag_values=v)),
    "backend": ("serving", None, "Search backend (default: the one the index holds).",
                lambda d, h, v: flags.DEFINE_enum("backend", d, _backends(), h, flag_values=v)),
    "k": ("serving", 10, "How many products (per category).",
          lambda d, h, v: flags.DEFINE_integer("k", d, h, lower_bound=1, flag_values=v)),
    "categories": ("serving", None, "Comma-separated category names (default: every category).",
                   lambda d, h, v: flags.DEFINE_string("categories", d, h, flag_values=v)),
    "version": ("serving", None, "Tower version (default: the latest).",
                lambda d, h, v: flags.DEFINE_integer("version", d, h, flag_values=v)),
    "pairs": ("build", None, "Pairs file of the dataset.",
              lambda d, h, v: flags.DEFINE_string("pairs", d, h, flag_values=v)),
    "street2shop_dir": ("build", None, "Street2Shop root (fashion1): photos/photos.txt, meta/json/.",
                        lambda d, h, v: flags.DEFINE_string("street2shop_dir", d, h, flag_values=v)),
    "workers": ("build", None, "Parallel workers.",
                lambda d, h, v: flags.DEFINE_integer("workers", d, h, lower_bound=1, flag_values=v)),
}
GROUPS = {"data": ("seed",), "model": ("backbone_weights",), "output": (), "serving": (), "build": (),
          "comparison": (), "training": tuple(f for f in FIELDS if f not in ("seed", "backbone_weights"))}
for _name, (_group, *_) in SHARED.items():
    GROUPS[_group] += (_name,)
GROUP_OF = {name: group for group, names in GROUPS.items() for name in names}


def define(*names: str, help_texts: dict | None = None, defaults: dict | None = None, flag_values=None) -> None:
    """Define the shared flags `names` (SHARED, or Config FIELDS); `help_texts` / `defaults` hold a command's
    own help or default of some of them."""
    help_texts, defaults = help_texts or {}, defaults or {}
    unknown = set(names) - set(SHARED) - set(FIELDS) or (set(help_texts) | set(defaults)) - set(names)
    if unknown:
        raise KeyError(f"not a shared flag (or not defined by this call): {', '.join(sorted(unknown))}")
    values = flags.FLAGS if flag_values is None else flag_values  # an empty FlagValues is falsy
    for name in dict.fromkeys(names):
        if name in FIELDS:
            _define_field(name, help_texts.get(name), defaults.get(name), values)
            continue
        _, default, help_text, definer = SHARED[name]
        help_text = help_texts.get(name, help_text() if callable(help_text) else help_text)
        definer(defaults.get(name, default), help_text, values)


def _define_field(name: str, help_text: str | None, default, values) -> None:
    """One absl flag for a Config field, typed from the dataclass; default None: the dataset's value."""
    help_text = help_text or HELP[name] + " Default: the dataset's."
    kind = "enum" if name in CHOICES else {int: "integer", float: "float"}.get(_field_types()[name], "string")
    extra = {"enum_values": list(CHOICES[name])} if name in CHOICES else {}
    if name in LOWER_BOUNDS:
        extra["lower_bound"] = LOWER_BOUNDS[name]
    getattr(flags, f"DEFINE_{kind}")(name, default, help=help_text, flag_values=values, **extra)


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
