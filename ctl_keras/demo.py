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

from ctl_keras import atomic
from ctl_keras.training.results import read_results

MODEL_DIR = os.path.join("runs", "demo")
DATA_DIR = os.path.join("tf_records", "synthetic")
EXPORT_DIR = os.path.join("export", "demo")
INDEX = os.path.join(EXPORT_DIR, "catalog")
SCENE = os.path.join(MODEL_DIR, "demo_scene.jpg")


def _run(*args: str, capture: bool = False) -> str:
    command = [sys.executable, "-m", *args]
    print(f"\n$ python -m {shlex.join(args)}", flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE if capture else None, text=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: step failed (exit {result.returncode}): python -m {shlex.join(args)}")
    return result.stdout or ""


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
    start = time.time()
    _run("ctl_keras.train", "--dataset=synthetic", f"--data_dir={DATA_DIR}", "--feature_cache",
         f"--model_dir={MODEL_DIR}")
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
    print(f"TensorBoard: tensorboard --logdir {MODEL_DIR}/tensorboard   Serving: see export/README.md")


if __name__ == "__main__":
    main()
