"""Train a CTL model: `ctl train --dataset=synthetic --smoke`.

Flags (generated from Config's fields: ctl_keras/cli/options.py) override `get_config(dataset, smoke)`;
`--data_dir=D` alone names the dataset (its manifest holds the spec); `--flagfile=run.flags` keeps a
run's settings. Rerunning the same command resumes from the last finished
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
from ctl_keras.cli import options as config_flags
from ctl_keras.training.run_options import RunOptions

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined on demand (cli.run), never at import. The shared flags (the Config fields among them) come
    from cli/options.py; the rest say how to run."""
    config_flags.define("dataset", "data_dir", "smoke", *config_flags.FIELDS, "model_dir", "full_scene",
                        "feature_cache", "feature_cache_dir", "backbone_precision", "min_backbone_agreement",
                        defaults={"backbone_precision": None}, help_texts={
                            "backbone_precision": "The feature cache's frozen ResNet50: float32, bfloat16 (about "
                                                  "2x faster on CPUs with avx512_bf16/amx_bf16 or GPUs of compute "
                                                  "capability >= 8.0; its own cache directory) or auto (bfloat16 "
                                                  "only there). Default: as the run being resumed, else float32.",
                            "model_dir": "Output and resume directory (default: runs/<dataset>-<variant>).",
                            "feature_cache": "Train the heads from cached frozen-backbone features (default: as "
                                             "the run being resumed in --model_dir recorded it, else on; "
                                             "--nofeature_cache: the image path)."})
    flags.DEFINE_enum("strategy", "auto", list(config_lib.STRATEGIES),
                      "auto: MirroredStrategy when there is more than one GPU; multi_worker: "
                      "MultiWorkerMirroredStrategy over the machines of TF_CONFIG.")
    flags.DEFINE_float("worker_timeout", 600.0, "multi_worker: seconds to wait for every worker to connect, and "
                       "for a feature cache another worker builds to show progress.")
    flags.DEFINE_integer("steps_per_execution", 1, "Train steps per tf.function call: the host dispatches once "
                         "per N batches (same weights for every N; progress, checkpoints and validation stay per epoch).")
    flags.DEFINE_bool("jit_compile", False, "Compile the train step and the feature-cache backbone with XLA.")
    flags.DEFINE_bool("mixed_precision", False, "Heads compute in mixed_float16 (with loss scaling) on a GPU, "
                      "mixed_bfloat16 on a CPU; embeddings, distances, attention and the loss stay float32.")


def config_from_flags(values=FLAGS):
    """(Config, data_dir, spec) from the flags; every value checked before TensorFlow starts."""
    spec, data_dir = config_flags.resolve_dataset(values.dataset, values.data_dir)
    return config_flags.config_from_flags(values, spec), data_dir, spec


def _ensure_dataset(spec, config: config_lib.Config, data_dir: str, named: bool, explicit: bool,
                    multi_worker: bool = False) -> None:
    """A generated dataset is built when missing, but only when it is what was asked for: --dataset names
    it (`named`), or data_dir is its default directory. A --data_dir without a manifest otherwise resolves
    to the synthetic dataset, and generating it there turned a typo or a failed build into a model trained
    on fake data that exits 0. Where it may be generated: build_dataset.ensure_synthetic."""
    if "://" in data_dir or os.path.exists(os.path.join(data_dir, "manifest.json")):
        return  # remote: TensorFlow's reader says what is missing
    default_dir = os.path.join("tf_records", spec.name)
    if not named and os.path.abspath(data_dir) != os.path.abspath(default_dir):
        raise ValueError(f"--data_dir={data_dir} has no manifest.json (not a built dataset): build one there with "
                         f"`ctl build --dataset=NAME --out={data_dir}`, or pass "
                         "--dataset=synthetic to generate the synthetic dataset into it")
    if not spec.generator:
        return  # other datasets: the pipeline's error says how to build them
    if multi_worker:  # every worker would generate into the same shared directory at once
        raise ValueError(f"no manifest.json in {data_dir}: build the dataset once before starting the workers: "
                         f"`ctl build --dataset=synthetic --out={data_dir}`")
    from ctl_keras.builder import build as build_dataset

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
    config, data_dir, spec = config_from_flags()
    multi_worker = FLAGS.strategy == "multi_worker"
    cluster_task = None
    if multi_worker:
        from ctl_keras.training.cluster import read_tf_config

        cluster_task = read_tf_config()
    model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.dataset}-{config.variant}")
    # Every run option checked (RunOptions.__post_init__) before TensorFlow starts and anything is written.
    options = RunOptions(data_dir=data_dir, model_dir=model_dir, strategy=FLAGS.strategy,
                         feature_cache=FLAGS.feature_cache, full_scene=FLAGS.full_scene,
                         feature_cache_dir=FLAGS.feature_cache_dir, cluster=cluster_task,
                         worker_timeout=FLAGS.worker_timeout, steps_per_execution=FLAGS.steps_per_execution,
                         jit_compile=FLAGS.jit_compile, backbone_precision=FLAGS.backbone_precision,
                         min_backbone_agreement=FLAGS.min_backbone_agreement)
    cli.check_output_dir(model_dir, "model_dir")
    _ensure_dataset(spec, config, data_dir, named=FLAGS.dataset is not None, explicit=FLAGS.data_dir is not None,
                    multi_worker=multi_worker)
    # TensorFlow is imported only now, so a bad flag fails in a fraction of a second.
    from ctl_keras.training import loop
    from ctl_keras.training.optimizer import mixed_precision_policy

    if FLAGS.mixed_precision:
        config = config.replace(precision=mixed_precision_policy())
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
