"""Train a CTL model: `python -m ctl_keras.train --dataset=synthetic --smoke`.

Flags override `get_config(dataset, smoke)`. Rerunning the same command resumes from the last finished
epoch; the model_dir layout is in ARCHITECTURE.md. TensorBoard: `tensorboard --logdir MODEL_DIR/tensorboard`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from absl import app, flags

from ctl_keras import config as config_lib
from ctl_keras import logs

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "synthetic", list(config_lib.DATASETS),
                  "Dataset; synthetic is generated and built when data_dir has no manifest.")
flags.DEFINE_string("data_dir", None, "Built dataset directory (default: tf_records/<dataset>).")
flags.DEFINE_string("model_dir", None, "Output and resume directory (default: runs/<dataset>-<variant>).")
flags.DEFINE_enum("variant", None, list(config_lib.VARIANTS), "Model variant (default: the config's).")
flags.DEFINE_bool("smoke", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks.")
flags.DEFINE_integer("epochs", None, "Epochs (default: the config's); may be raised on resume.")
flags.DEFINE_integer("batch_size", None, "Global batch size, split over the replicas.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
flags.DEFINE_integer("embedding_dim", None, "Embedding size d.")
flags.DEFINE_float("margin", None, "Triplet hinge margin alpha.")
flags.DEFINE_integer("image_size", None, "Square input size; train views are random crops of a resize to 8/7 of it.")
flags.DEFINE_string("backbone_weights", None, "imagenet, none, or a path to a ResNet50 .h5 file.")
flags.DEFINE_integer("eval_every", None, "Validate every N epochs (and at the last).")
flags.DEFINE_integer("seed", None, "Seed of weights, dropout and data order.")
flags.DEFINE_integer("num_views", None, "Augmented views per image in the feature cache.")
flags.DEFINE_enum("strategy", "auto", ["auto", "mirrored", "one_device"],
                  "auto: MirroredStrategy when there is more than one GPU.")
flags.DEFINE_bool("feature_cache", False, "Train the heads from cached frozen-backbone features.")
flags.DEFINE_string("cache_dir", None, "Feature cache directory (default: under <data_dir>/feature_cache/).")
flags.DEFINE_bool("full_scene", False, "Train on uncropped scenes (the paper's 'full images' rows); validation and test are always on cropped scenes.")

_OVERRIDES = ("variant", "epochs", "batch_size", "learning_rate", "embedding_dim", "margin", "image_size",
              "backbone_weights", "eval_every", "seed", "num_views")


def config_from_flags(values=FLAGS) -> config_lib.Config:
    overrides = {name: getattr(values, name) for name in _OVERRIDES if getattr(values, name) is not None}
    if "image_size" in overrides:
        overrides["resize_size"] = overrides["image_size"] * 8 // 7  # 224 -> 256 as in the paper
    for name in ("epochs", "batch_size", "eval_every", "num_views"):
        if name in overrides and overrides[name] < 1:
            raise ValueError(f"--{name} must be at least 1, got {overrides[name]}")
    return config_lib.get_config(values.dataset, smoke=values.smoke, **overrides)


def _ensure_dataset(config: config_lib.Config, data_dir: str) -> None:
    if os.path.exists(os.path.join(data_dir, "manifest.json")) or config.dataset != "synthetic":
        return  # other datasets: the pipeline's error says how to build them
    # A child process: build_dataset defines its own absl flags (--dataset, ...) at import time.
    command = [sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=synthetic", f"--out={data_dir}",
               f"--seed={config.seed}"] + (["--smoke"] if FLAGS.smoke else [])
    print(f"train: no built synthetic dataset in {data_dir}; running {' '.join(command[1:])}", file=sys.stderr)
    if subprocess.run(command).returncode != 0:
        raise RuntimeError(f"building the synthetic dataset into {data_dir} failed (see above)")


def _is_tf_op_error(err: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")  # never import TF here: a flag error must stay fast
    return tf is not None and isinstance(err, tf.errors.OpError)


def _op_error_line(err) -> str:
    """A runtime error from inside a tf.data/tf.function graph (e.g. a truncated TFRecord) as one line."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", getattr(err, "message", "") or str(err)).strip()
    first = text.splitlines()[0] if text else ""
    return (f"{type(err).__name__}: {first} (a damaged data file? rebuild the dataset with "
            f"`python -m ctl_keras.build_dataset`)")


def main(argv):
    logs.quiet_library_info()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
        # TensorFlow is imported only now, so a bad flag fails in a fraction of a second.
        from ctl_keras.training import loop  # noqa: PLC0415

        data_dir = FLAGS.data_dir or os.path.join("tf_records", config.dataset)
        model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.dataset}-{config.variant}")
        _ensure_dataset(config, data_dir)
        options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, strategy=FLAGS.strategy,
                                  feature_cache=FLAGS.feature_cache, full_scene=FLAGS.full_scene,
                                  cache_dir=FLAGS.cache_dir)
        results = loop.train(config, options)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"train: error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 (only TensorFlow's runtime errors are turned into one line)
        if not _is_tf_op_error(e):
            raise
        print(f"train: error: {_op_error_line(e)}", file=sys.stderr)
        sys.exit(1)
    print(f"val AUC {results['val_auc']:.4f} (epoch {results['best_epoch']}), test AUC {results['test_auc']:.4f}")


if __name__ == "__main__":
    app.run(main)
