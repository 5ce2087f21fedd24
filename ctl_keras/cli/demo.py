"""The main job on the embedded synthetic dataset (`make demo`), as the CLI commands a user would run.

Each step is a printed, copy-pasteable command: build + train (frozen-feature cache), evaluate, export
both towers, index the test catalog, then recommend products for one held-out test scene. Re-running
resumes training (or finds it finished) and exports a new version.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from ctl_keras.utils import atomic
from ctl_keras.utils import logs
from ctl_keras.model.run_dir import read_results

MODEL_DIR = os.path.join("runs", "demo")
DATA_DIR = os.path.join("tf_records", "synthetic")
EXPORT_DIR = os.path.join("export", "demo")
INDEX = os.path.join(EXPORT_DIR, "catalog")
SCENE = os.path.join(MODEL_DIR, "demo_scene.jpg")
# 40 of the synthetic config's 100 epochs, with the learning rate decayed to 0 over them (cosine) and
# validation every 5: at the config's constant 1e-3 the val AUC swings by up to 0.09 between epochs 5
# apart; decayed, the curve settles and validates higher (BUILD_NOTES, "The demo's learning rate").
# 2 cached views per train scene instead of the config's 4 halve the feature cache, the demo's largest
# part; on validation they are level with 4 at 40 epochs (BUILD_NOTES, "make demo in six minutes";
# chosen on validation AUC only).
DEMO_TRAIN_FLAGS = ("--epochs=40", "--num_views=2", "--lr_schedule=cosine", "--eval_every=5",
                    "--steps_per_execution=16")
# TensorFlow sizes its thread pools from the CPUs the process may use; a pinned size keeps the CPU count
# out of the float order (machine load never entered it: benchmarks/load_determinism.py). A user's own
# TF_NUM_*_THREADS win.
DEMO_THREADS = {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
SECONDS: dict[str, float] = {}  # wall seconds per step (the module's short name), printed at the end


def _run(*args: str, capture: bool = False) -> str:
    command = [sys.executable, "-m", *args]
    print(f"\n$ python -m {shlex.join(args)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.PIPE if capture else None, text=True,
                            env={**DEMO_THREADS, **os.environ})
    name = args[0].rsplit(".", 1)[-1] + (f" {args[1]}" if args[0] == "ctl_keras.recommend" else "")
    SECONDS[name] = SECONDS.get(name, 0.0) + time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"demo: step failed (exit {result.returncode}): python -m {shlex.join(args)}")
    return result.stdout or ""


def _breakdown(results: dict) -> str:
    """Where the demo's time went: each command, and inside train its parts (results.json "timing")."""
    parts = [f"{name} {seconds:.0f} s" for name, seconds in SECONDS.items()]
    inner = results.get("timing", {})
    train = ", ".join(f"{k.removesuffix('_seconds').replace('_', ' ')} {v:.0f} s" for k, v in inner.items())
    return "time: " + ", ".join(parts) + (f"\n  train: {train}" if train else "")


def _write_test_scene() -> dict:
    """Writes the cropped scene of the first test question to SCENE; returns the question."""
    from ctl_keras.data import dataset_dir, pipeline  # TensorFlow only after training has run in its own process

    question = dataset_dir.load_questions(DATA_DIR, "test")[0]
    for example in pipeline.raw_pairs(DATA_DIR, "test"):
        if int(example["pair_id"]) == question["pair_id"]:
            atomic.write_bytes(SCENE, example["scene_jpeg"].numpy())
            return question
    raise SystemExit(f"demo: pair {question['pair_id']} of the first test question is missing in {DATA_DIR}")


def main() -> None:
    logs.quiet_tensorflow_startup()  # this process imports TensorFlow too (_write_test_scene)
    start = time.time()
    if not os.path.exists(os.path.join(DATA_DIR, "manifest.json")):
        _run("ctl_keras.build_dataset", "--dataset=synthetic", f"--out={DATA_DIR}")
    _run("ctl_keras.train", "--dataset=synthetic", f"--data_dir={DATA_DIR}", "--feature_cache",
         *DEMO_TRAIN_FLAGS, f"--model_dir={MODEL_DIR}")
    _run("ctl_keras.evaluate", f"--model_dir={MODEL_DIR}", f"--data_dir={DATA_DIR}")
    _run("ctl_keras.export", f"--model_dir={MODEL_DIR}", f"--export_dir={EXPORT_DIR}")
    _run("ctl_keras.recommend", "index", f"--export_dir={EXPORT_DIR}", f"--products={DATA_DIR}:test",
         f"--index={INDEX}")
    question = _write_test_scene()
    out = _run("ctl_keras.recommend", "query", f"--index={INDEX}", f"--scene={SCENE}",
               f"--category={question['category']}", "--k=10", "--json", capture=True)
    ranked = json.loads(out)
    print(f"\nTop 10 {question['category']} for test scene {question['scene_id']} ({SCENE}):")
    for rank, item in enumerate(ranked, 1):
        mark = "  <- the product actually paired with this scene" if item["product_id"] == question["positive"] else ""
        print(f"  {rank:2d}. {item['product_id']}  d*={item['d_star']:.4f}{mark}")
    results = read_results(MODEL_DIR)
    print(f"\nval AUC {results['val_auc']:.4f}  test AUC {results['test_auc']:.4f}  "
          f"(best epoch {results['best_epoch']} of {results['epochs_run']}); demo took {time.time() - start:.0f} s")
    print(_breakdown(results))
    print(f"TensorBoard: tensorboard --logdir {MODEL_DIR}/tensorboard   Serving: see export/README.md")


if __name__ == "__main__":
    main()
