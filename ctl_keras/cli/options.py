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


@dataclasses.dataclass(frozen=True)
class Flag:
    """A shared flag: its group, absl kind (string, bool, integer, enum, list), default and help. Type,
    name and bounds live here once; a command may pass its own default or help (define's overrides)."""
    group: str
    kind: str
    default: object
    help: str | typing.Callable[[], str]
    choices: typing.Callable[[], list[str]] | None = None
    lower_bound: int | None = None
    upper_bound: int | None = None


SHARED = {
    "dataset": Flag("data", "string", None, lambda: _datasets() + " Default: the one --data_dir was built from, "
                    "else synthetic (generated and built when its directory has no manifest)."),
    "data_dir": Flag("data", "string", None, "Built dataset directory (default: tf_records/<dataset>)."),
    "smoke": Flag("data", "bool", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks."),
    "split": Flag("data", "enum", "test", "Split to evaluate.", choices=lambda: ["val", "test"]),
    "num_scenes": Flag("data", "integer", None, "Number of scenes.", lower_bound=1),
    "model_dir": Flag("model", "string", None, "Trained model directory (config.json + best.weights.h5)."),
    "which": Flag("model", "enum", "best", "Which head weights of model_dir to load.",
                  choices=lambda: ["best", "last"]),
    "full_scene": Flag("model", "bool", False, "Train on uncropped scenes (the paper's 'full images' rows); "
                       "validation and test are always on cropped scenes."),
    "feature_cache": Flag("model", "bool", None, "Use the frozen-backbone feature cache."),
    "feature_cache_dir": Flag("model", "string", None, "Directory of the --feature_cache (default: under "
                              "<data_dir>/feature_cache/)."),
    "backbone_precision": Flag("model", "enum", "float32", "The frozen ResNet50's precision: float32 (bit-identical "
                               "to earlier releases), bfloat16 (about 2x faster where the CPU has avx512_bf16 or "
                               "amx_bf16, or on a GPU of compute capability >= 8.0; outputs stay float32), or auto "
                               "(bfloat16 only on such hardware; the log says which). The heads keep "
                               "--mixed_precision.", choices=lambda: list(config_lib.BACKBONE_PRECISIONS)),
    "min_backbone_agreement": Flag("model", "float", None, "Refuse (write nothing) when the bfloat16 backbone's "
                                   "worst cosine with float32 on the check's sample is below this, e.g. 0.99.",
                                   lower_bound=-1, upper_bound=1),
    "methods": Flag("comparison", "list", None, "Methods to compare."),
    "out": Flag("output", "string", None, "Output directory."),
    "export_dir": Flag("serving", "string", None, "Export dir (scene_tower/, product_tower/, recommender/)."),
    "index": Flag("serving", "string", None, "Catalog index path stem (STEM.npz + STEM.json)."),
    "backend": Flag("serving", "enum", None, "Search backend (default: the one the index holds).",
                    choices=_backends),
    "k": Flag("serving", "integer", 10, "How many products (per category).", lower_bound=1),
    "categories": Flag("serving", "string", None, "Comma-separated category names (default: every category)."),
    "version": Flag("serving", "integer", None, "Tower version (default: the latest)."),
    "pairs": Flag("build", "string", None, "Pairs file of the dataset."),
    "street2shop_dir": Flag("build", "string", None, "Street2Shop root (fashion1): photos/photos.txt, meta/json/."),
    "workers": Flag("build", "integer", None, "Parallel workers.", lower_bound=1),
}
GROUPS = {"data": ("seed",), "model": ("backbone_weights",), "output": (), "serving": (), "build": (),
          "comparison": (), "training": tuple(f for f in FIELDS if f not in ("seed", "backbone_weights"))}
for _name, _flag in SHARED.items():
    GROUPS[_flag.group] += (_name,)
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
        flag = SHARED[name]
        help_text = help_texts.get(name, flag.help() if callable(flag.help) else flag.help)
        extra = {"enum_values": flag.choices()} if flag.choices else {}
        if flag.lower_bound is not None:
            extra["lower_bound"] = flag.lower_bound
        if flag.upper_bound is not None:
            extra["upper_bound"] = flag.upper_bound
        getattr(flags, f"DEFINE_{flag.kind}")(name, defaults.get(name, flag.default), help=help_text,
                                                flag_values=values, **extra)


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
