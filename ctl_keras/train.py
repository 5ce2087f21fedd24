"""Train a CTL model: `python -m ctl_keras.train --dataset=synthetic --smoke`.

Flags override `get_config(dataset, smoke)`. Rerunning the same command resumes from the last finished
epoch; the model_dir layout is in ARCHITECTURE.md. TensorBoard: `tensorboard --logdir MODEL_DIR/tensorboard`.

Several machines: the same command with `--strategy=multi_worker` on every worker, each with its TF_CONFIG
(README "Training on several machines"); data_dir and model_dir on storage every worker sees.
"""

from __future__ import annotations

import os
import re
import sys

from absl import flags

from ctl_keras import config as config_lib
from ctl_keras import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined on demand (cli.run), never at import."""
    flags.DEFINE_enum("dataset", "synthetic", list(config_lib.DATASETS),
                      "Dataset; synthetic is generated and built when data_dir has no manifest.")
    flags.DEFINE_string("data_dir", None, "Built dataset directory (default: tf_records/<dataset>).")
    flags.DEFINE_string("model_dir", None, "Output and resume directory (default: runs/<dataset>-<variant>).")
    flags.DEFINE_enum("variant", None, list(config_lib.VARIANTS), "Model variant (default: the config's).")
    flags.DEFINE_bool("smoke", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks.")
    flags.DEFINE_integer("epochs", None, "Epochs (default: the config's); may be raised on resume.")
    flags.DEFINE_integer("batch_size", None, "Global batch size, split over the replicas.")
    flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
    flags.DEFINE_enum("lr_schedule", None, list(config_lib.LR_SCHEDULES),
                      "constant (the paper; the default) or cosine: decay to 0 over --epochs (steadier late "
                      "epochs; raising --epochs on resume stretches the rest of the curve).")
    flags.DEFINE_integer("embedding_dim", None, "Embedding size d.")
    flags.DEFINE_float("margin", None, "Triplet hinge margin alpha.")
    flags.DEFINE_integer("image_size", None, "Square input size; train views are random crops of a resize to 8/7 of it.")
    flags.DEFINE_string("backbone_weights", None, "imagenet, none, or a path to a ResNet50 .h5 file.")
    flags.DEFINE_integer("eval_every", None, "Validate every N epochs (and at the last).")
    flags.DEFINE_integer("seed", None, "Seed of weights, dropout and data order.")
    flags.DEFINE_integer("num_views", None, "Augmented views per image in the feature cache.")
    flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES),
                      "auto: MirroredStrategy when there is more than one GPU; multi_worker: "
                      "MultiWorkerMirroredStrategy over the machines of TF_CONFIG.")
    flags.DEFINE_float("worker_timeout", 600.0, "multi_worker: seconds to wait for every worker to connect, and "
                       "for a feature cache another worker builds to show progress.")
    flags.DEFINE_float("dropout", None, "Dropout rate of the heads, in [0, 1).")
    flags.DEFINE_bool("feature_cache", False, "Train the heads from cached frozen-backbone features.")
    flags.DEFINE_string("feature_cache_dir", None, "Directory of the --feature_cache (default: under "
                        "<data_dir>/feature_cache/).")
    flags.DEFINE_integer("steps_per_execution", 1, "Train steps per tf.function call: the host dispatches once "
                         "per N batches (same weights for every N; progress, checkpoints and validation stay per epoch).")
    flags.DEFINE_bool("jit_compile", False, "Compile the train step and the feature-cache backbone with XLA.")
    flags.DEFINE_bool("mixed_precision", False, "Heads compute in mixed_float16 (with loss scaling) on a GPU, "
                      "mixed_bfloat16 on a CPU; embeddings, distances, attention and the loss stay float32.")
    flags.DEFINE_bool("full_scene", False, "Train on uncropped scenes (the paper's 'full images' rows); validation and test are always on cropped scenes.")


_OVERRIDES = ("variant", "epochs", "batch_size", "learning_rate", "lr_schedule", "embedding_dim", "margin", "image_size",
              "backbone_weights", "eval_every", "seed", "num_views", "dropout")


def config_from_flags(values=FLAGS) -> config_lib.Config:
    overrides = {name: getattr(values, name) for name in _OVERRIDES if getattr(values, name) is not None}
    if "image_size" in overrides:
        overrides["resize_size"] = overrides["image_size"] * 8 // 7  # 224 -> 256 as in the paper
    # Every value is checked here, before TensorFlow starts and before anything is written (issue 9).
    for name in ("epochs", "batch_size", "eval_every", "num_views", "embedding_dim"):
        if name in overrides and overrides[name] < 1:
            raise ValueError(f"--{name} must be at least 1, got {overrides[name]}")
    for name in ("learning_rate",):
        if name in overrides and not overrides[name] > 0:
            raise ValueError(f"--{name} must be positive, got {overrides[name]}")
    if "margin" in overrides and not overrides["margin"] >= 0:
        raise ValueError(f"--margin must be at least 0, got {overrides['margin']}")
    if "dropout" in overrides and not 0 <= overrides["dropout"] < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {overrides['dropout']}")
    _check_backbone_weights(overrides.get("backbone_weights"))
    return config_lib.get_config(values.dataset, smoke=values.smoke, **overrides)


def _check_backbone_weights(weights: str | None) -> None:
    if weights is None or weights in ("imagenet", "none"):
        return
    if not os.path.isfile(weights):
        raise ValueError(f"--backbone_weights={weights}: no such file; pass imagenet, none or the path of a "
                         "ResNet50 (include_top=False) .h5 file")
    if not weights.endswith((".h5", ".hdf5")):
        raise ValueError(f"--backbone_weights={weights} is not an .h5 file")


def _ensure_dataset(config: config_lib.Config, data_dir: str, explicit: bool, multi_worker: bool = False) -> None:
    """The synthetic dataset is built when missing (build_dataset.ensure_synthetic says where it may be)."""
    if config.dataset != "synthetic" or os.path.exists(os.path.join(data_dir, "manifest.json")):
        return  # other datasets: the pipeline's error says how to build them
    if multi_worker:  # every worker would generate into the same shared directory at once
        raise ValueError(f"no manifest.json in {data_dir}: build the dataset once before starting the workers: "
                         f"`python -m ctl_keras.build_dataset --dataset=synthetic --out={data_dir}`")
    from ctl_keras import build_dataset

    build_dataset.ensure_synthetic(data_dir, seed=config.seed, smoke=FLAGS.smoke, explicit=explicit,
                                   log=lambda line: print(f"train: {line}", file=sys.stderr))


_LOST_WORKER = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


def _lost_worker_line(err) -> str:
    """A collective that failed because a peer died, as the one line a multi-worker user needs."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", getattr(err, "message", "") or str(err)).strip()
    first = text.splitlines()[0] if text else ""
    peers = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", text)))
    return (f"lost contact with the other workers ({type(err).__name__}"
            + (f"; {', '.join(peers)}" if peers else "") + f": {first[:200]}); rerun every "
            "worker's command to resume from the last finished epoch")


def main(argv):
    config = config_from_flags()
    if FLAGS.steps_per_execution < 1:
        raise ValueError(f"--steps_per_execution must be at least 1, got {FLAGS.steps_per_execution}")
    multi_worker = FLAGS.strategy == "multi_worker"
    cluster_task = None
    if multi_worker:
        from ctl_keras.training.cluster import read_tf_config

        cluster_task = read_tf_config()
        if not FLAGS.worker_timeout > 0:
            raise ValueError(f"--worker_timeout must be positive, got {FLAGS.worker_timeout}")
    data_dir = FLAGS.data_dir or os.path.join("tf_records", config.dataset)
    model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.dataset}-{config.variant}")
    cli.check_output_dir(model_dir, "model_dir")
    _ensure_dataset(config, data_dir, explicit=FLAGS.data_dir is not None, multi_worker=multi_worker)
    # TensorFlow is imported only now, so a bad flag fails in a fraction of a second.
    from ctl_keras.training import loop
    from ctl_keras.training.optimizer import mixed_precision_policy

    if FLAGS.mixed_precision:
        config = config.replace(precision=mixed_precision_policy())
    options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, strategy=FLAGS.strategy,
                              feature_cache=FLAGS.feature_cache, full_scene=FLAGS.full_scene,
                              feature_cache_dir=FLAGS.feature_cache_dir, cluster=cluster_task,
                              worker_timeout=FLAGS.worker_timeout,
                              steps_per_execution=FLAGS.steps_per_execution, jit_compile=FLAGS.jit_compile)
    try:
        results = loop.train(config, options)
    except Exception as err:
        tf = sys.modules.get("tensorflow")
        if multi_worker and isinstance(err, tf.errors.OpError) and type(err).__name__ in _LOST_WORKER:
            raise cli.ExitNow(_lost_worker_line(err)) from None
        raise
    print(f"val AUC {results['val_auc']:.4f} (epoch {results['best_epoch']}), test AUC {results['test_auc']:.4f}")


if __name__ == "__main__":
    cli.run(main, "train", define_flags=define_flags)
