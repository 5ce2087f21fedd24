"""Frozen-feature fast path vs the image path, and the synthetic quality target, in one run.

    python benchmarks/feature_cache.py [--compare_epochs 4] [--epochs N] [--work_dir DIR]

On the demo-size synthetic dataset (`timing.config()`: 112 px, random frozen backbone), built
into tf_records/synthetic when missing, it measures with the real training loop (ctl_keras.training):
1. the raw-backbone baseline: test AUC of the L2 distance between scene and product pool5, no training;
2. the cache build time (every train image x num_views views, val/test center views);
3. `hybrid` trained --compare_epochs epochs from images and from the cache (same heads, same seed,
   batch 16): seconds per epoch of each (median over epochs 2.., as epoch 1 also traces the step;
   read from the trainer's steps/s summaries), their ratio (target >= 20x), test AUCs and their
   difference (target <= 0.02);
4. `hybrid` and `global` trained from the cache for config.epochs (issue target: hybrid test AUC
   >= 0.85 and above global).
5. with --backbone_precisions=float32,bfloat16: the cache build's images/s under each backbone precision,
   interleaved build by build (--build_repeats, median), with the agreement each bfloat16 build measured and
   the CPU's bf16 flags beside every figure; --build_only stops there.
Runs go under --work_dir (wiped per run, so nothing resumes); results are printed and written to
<work_dir>/summary.json.

    python benchmarks/feature_cache.py --backbone_precisions=float32,bfloat16,auto --build_only
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags, logging

import timing

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "tf_records/synthetic", "Built synthetic dataset (built here when missing).")
flags.DEFINE_string("work_dir", "/tmp/ctl_bench/feature_cache", "Model dirs and the cache; wiped first.")
flags.DEFINE_integer("compare_epochs", 4, "Epochs of the image-path vs cache-path comparison (seconds per epoch: the median of epochs 2..N; epoch 1 also traces).")
flags.DEFINE_integer("epochs", None, "Epochs of the hybrid/global quality runs (default: config.epochs).")
flags.DEFINE_float("learning_rate", None, "Adam learning rate (default: the config's).")
flags.DEFINE_integer("num_views", None, "Cached views per train image (default: the config's).")
flags.DEFINE_bool("skip_image_path", False, "Only the cache-path runs (no epoch-time comparison).")
flags.DEFINE_list("backbone_precisions", [], "Compare the cache build under these backbone precisions "
                  "(float32, bfloat16, auto), interleaved.")
flags.DEFINE_integer("build_repeats", 3, "Builds per precision in the comparison (median reported).")
flags.DEFINE_bool("build_only", False, "Only the precision comparison of the cache build.")


def _precision_builds(config, data_dir: str, work: str) -> dict:
    """{precision: images/s (median), every repeat's, the agreement}: each round builds one cache per
    precision, in order, from scratch (the bfloat16 copy, its check and every image included)."""
    from ctl_keras.feature_cache import FeatureCache
    from ctl_keras.model import precision as precision_lib
    from ctl_keras.model.ctl import build_ctl

    backbone = build_ctl(config).backbone
    seconds = {p: [] for p in FLAGS.backbone_precisions}
    out = {}
    for _ in range(FLAGS.build_repeats):
        for choice in FLAGS.backbone_precisions:
            resolved = precision_lib.resolve(choice)[0]
            cache_dir = os.path.join(work, f"precision_{choice}")
            shutil.rmtree(cache_dir, ignore_errors=True)
            start = time.perf_counter()
            cache = FeatureCache.build_or_load(config, data_dir, cache_dir, backbone, backbone_precision=resolved)
            seconds[choice].append(time.perf_counter() - start)
            images = sum((s["pairs"] + s["products"]) * s["views"] for s in cache.manifest["splits"].values())
            out[choice] = {"resolved": resolved, "images": images,
                           "agreement": cache.manifest.get("backbone_agreement")}
    for choice, times in seconds.items():
        r = out[choice]
        r["seconds"] = times
        r["images_per_second"] = r["images"] / statistics.median(times)
        a = r["agreement"]
        agree = "" if a is None else (f"; pool5 cosine min {a['cosine_min']:.6f}, top-10 overlap mean "
                                      f"{a['top_k_overlap_mean']:.2f}, max |delta d*| {a['max_abs_delta_d_star']:.3g}")
        print(f"cache build {choice} ({r['resolved']}): {r['images_per_second']:.1f} images/s (median of "
              f"{len(times)} builds of {r['images']} images: {', '.join(f'{t:.1f}' for t in times)} s){agree} | "
              f"{timing.machine_line()}", flush=True)
    base = out.get("float32")
    if base:
        for choice in out:
            out[choice]["vs_float32"] = out[choice]["images_per_second"] / base["images_per_second"]
        print("cache build vs float32: " + ", ".join(f"{c} {out[c]['vs_float32']:.2f}x" for c in out))
    return out


def _raw_backbone_auc(config, data_dir: str, cache) -> dict:
    """Test AUC of ||pool5_s - pool5_p||^2, raw and L2-normalized (no training, no heads)."""
    from ctl_keras.evaluation import embed
    from ctl_keras.evaluation import ranking as metrics
    from ctl_keras.data import dataset_dir

    questions = dataset_dir.load_questions(data_dir, "test")
    s, p = cache.scenes("test"), cache.products("test")
    scene = np.asarray(s["pool5"], np.float64)
    prod = np.asarray(p["pool5"], np.float64)
    out = {}
    for name, norm in (("l2", False), ("l2_normalized", True)):
        a = scene / np.linalg.norm(scene, axis=1, keepdims=True) if norm else scene
        b = prod / np.linalg.norm(prod, axis=1, keepdims=True) if norm else prod
        # ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b: fold |a|^2 out (same for both products of a question).
        queries = embed.SceneQueries(query=2.0 * a, scene_embedding=None, attention=None, pair_ids=s["pair_ids"],
                                     categories=s["category"], scene_ids=s["scene_ids"],
                                     positive_ids=s["positive_ids"])
        products = embed.ProductEmbeddings(p["ids"], p["category"], b)
        d_pos, d_neg = embed.question_distances(queries, products, questions)
        sq = dict(zip(p["ids"], np.sum(b * b, axis=1)))
        d_pos = d_pos + np.array([sq[q["positive"]] for q in questions])
        d_neg = d_neg + np.array([sq[q["negative"]] for q in questions])
        out[name] = metrics.binary_auc(d_pos, d_neg)
    return out


def _epoch_seconds(model_dir: str, steps: int) -> list[float]:
    """Per-epoch train seconds, read back from the trainer's train/steps_per_second summaries."""
    from ctl_keras.training.summaries import read_scalars

    return [steps / rate for rate in read_scalars(model_dir, "train/steps_per_second")]


def _train(config, data_dir: str, model_dir: str, cache_dir: str | None) -> dict:
    from ctl_keras.data import dataset_dir
    from ctl_keras.training import loop

    shutil.rmtree(model_dir, ignore_errors=True)
    options = loop.RunOptions(data_dir=data_dir, model_dir=model_dir, strategy="one_device",
                              feature_cache=cache_dir is not None, feature_cache_dir=cache_dir)
    start = time.perf_counter()
    res = loop.train(config, options)
    res["wall_seconds"] = time.perf_counter() - start
    pairs = dataset_dir.read_manifest(data_dir)["splits"]["train"]["pairs"]
    res["epoch_seconds"] = _epoch_seconds(model_dir, math.ceil(pairs / config.batch_size))
    # Epoch 1 also traces the train step; later epochs are the steady state.
    steady = res["epoch_seconds"][1:] or res["epoch_seconds"]
    res["seconds_per_epoch"] = float(np.median(steady))
    logging.info("%s: %.2f s/epoch, val AUC %.4f, test AUC %.4f", model_dir, res["seconds_per_epoch"],
                 res["val_auc"], res["test_auc"])
    return {k: res[k] for k in ("variant", "epochs_run", "best_epoch", "val_auc", "test_auc", "train_seconds",
                                "epoch_seconds", "seconds_per_epoch", "wall_seconds")}


def run() -> dict:
    from ctl_keras.feature_cache import FeatureCache
    from ctl_keras.model.ctl import build_ctl

    overrides = {k: getattr(FLAGS, k) for k in ("learning_rate", "num_views") if getattr(FLAGS, k) is not None}
    config = timing.config(batch_size=16, **overrides)
    epochs = FLAGS.epochs or config.epochs
    data_dir, work = FLAGS.data_dir, FLAGS.work_dir
    from ctl_keras.builder.build import ensure_synthetic

    ensure_synthetic(data_dir, seed=config.seed, explicit=False)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    summary: dict = {"config": {k: getattr(config, k) for k in ("image_size", "local_grid", "num_views",
                                                                "learning_rate", "batch_size", "backbone_weights")}}
    if FLAGS.backbone_precisions:
        summary["precision_builds"] = _precision_builds(config, data_dir, work)
        if FLAGS.build_only:
            return summary

    # The trainer's build_ctl seeds the random backbone with config.seed, so this one is identical.
    cache_dir = os.path.join(work, "cache")
    start = time.perf_counter()
    cache = FeatureCache.build_or_load(config, data_dir, cache_dir, build_ctl(config).backbone)
    summary["cache_build_seconds"] = time.perf_counter() - start
    summary["cache_bytes"] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache_dir) for f in fs)
    summary["raw_backbone_test_auc"] = _raw_backbone_auc(config, data_dir, cache)
    logging.info("cache built in %.0f s; raw backbone test AUC %s", summary["cache_build_seconds"],
                 summary["raw_backbone_test_auc"])

    n = FLAGS.compare_epochs
    short = config.replace(epochs=n, eval_every=n)
    summary["cache_path"] = _train(short, data_dir, os.path.join(work, "cache_hybrid"), cache_dir)
    if not FLAGS.skip_image_path:
        summary["image_path"] = _train(short, data_dir, os.path.join(work, "image_hybrid"), None)
        img, fc = summary["image_path"], summary["cache_path"]
        summary["speedup_per_epoch"] = img["seconds_per_epoch"] / fc["seconds_per_epoch"]
        summary["test_auc_difference"] = abs(img["test_auc"] - fc["test_auc"])

    for variant in ("hybrid", "global"):
        long = config.replace(variant=variant, epochs=epochs)
        summary[f"{variant}_{epochs}ep"] = _train(long, data_dir, os.path.join(work, f"{variant}_long"), cache_dir)
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        summary = run()
    except (ValueError, FileNotFoundError) as e:
        print(f"feature_cache benchmark: error: {e}", file=sys.stderr)
        sys.exit(1)
    path = os.path.join(FLAGS.work_dir, "summary.json")
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(path + ".tmp", path)
    print(json.dumps(summary, indent=1))
    if FLAGS.build_only:
        return
    if "speedup_per_epoch" in summary:
        print(f"speedup per epoch: {summary['speedup_per_epoch']:.1f}x (target >= 20x); "
              f"test AUC image {summary['image_path']['test_auc']:.4f} vs cache "
              f"{summary['cache_path']['test_auc']:.4f}: difference {summary['test_auc_difference']:.4f} "
              f"(target <= 0.02) after {FLAGS.compare_epochs} epochs")
    keys = [k for k in summary if k.startswith(("hybrid_", "global_"))]
    print("quality: " + ", ".join(f"{k} test AUC {summary[k]['test_auc']:.4f}" for k in keys)
          + f"; raw backbone {summary['raw_backbone_test_auc']} (issue: hybrid >= 0.85 > global; raw 0.45-0.6)")


if __name__ == "__main__":
    timing.run(main)
