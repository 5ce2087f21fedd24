"""Does a `make demo`-like training run depend on machine load or on the thread count?

    python benchmarks/load_determinism.py --out=/tmp/load_det [--epochs=6] [--burners=2]

Builds the smoke synthetic set (48 scenes) once, then trains the demo's recipe (synthetic config,
feature cache built in each run, cosine schedule, 2 views, 16 steps per call) several times, each
into its own model_dir and feature-cache dir:
  quiet       as is
  quiet-2     as is, again
  loaded      while `--burners` busy-looping processes compete for the CPUs
  1-thread    under `taskset -c 0` (TensorFlow then sizes its thread pools to 1 CPU)
  pinned-*    with TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS fixed (ctl_keras.demo's fix), quiet,
              loaded and under `taskset -c 0`
and prints, per run, the per-epoch train losses and val AUC, and whether they are bit-identical to
the first run's (resp. the first pinned run's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) % 2**31


def _train(data_dir: str, model_dir: str, epochs: int, env_extra: dict, prefix: list[str]) -> float:
    env = {**os.environ, **env_extra, "PYTHONPATH": ROOT}
    command = [*prefix, sys.executable, "-m", "ctl_keras.train", "--dataset=synthetic", f"--data_dir={data_dir}",
               "--feature_cache", f"--feature_cache_dir={model_dir}-cache", f"--epochs={epochs}", "--num_views=2",
               "--lr_schedule=cosine", "--eval_every=2", "--steps_per_execution=16", f"--model_dir={model_dir}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _losses(model_dir: str) -> dict:
    sys.path.insert(0, ROOT)
    from ctl_keras.training.summaries import read_scalars

    return {"loss": read_scalars(model_dir, "train/loss"), "val_auc": read_scalars(model_dir, "val/auc")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tests/test_benchmarks_smoke.py: the first two runs only")
    args = parser.parse_args()
    data_dir = os.path.join(args.out, "data")
    if not os.path.exists(os.path.join(data_dir, "manifest.json")):
        subprocess.run([sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=synthetic", "--smoke",
                        f"--out={data_dir}"], check=True, env={**os.environ, "PYTHONPATH": ROOT},
                       stdout=subprocess.DEVNULL)
    pinned = {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"}
    runs = [("quiet", {}, [], 0), ("quiet-2", {}, [], 0), ("loaded", {}, [], args.burners),
            ("1-thread", {}, ["taskset", "-c", "0"], 0), ("pinned", pinned, [], 0),
            ("pinned-loaded", pinned, [], args.burners), ("pinned-1-cpu", pinned, ["taskset", "-c", "0"], 0)]
    if args.smoke:
        runs = runs[:2]
    results = {}
    for name, env_extra, prefix, burners in runs:
        model_dir = os.path.join(args.out, name)
        procs = [multiprocessing.Process(target=_burn, args=(time.time() + 3600,)) for _ in range(burners)]
        for p in procs:
            p.start()
        try:
            seconds = _train(data_dir, model_dir, args.epochs, env_extra, prefix)
        finally:
            for p in procs:
                p.terminate()
                p.join()
        results[name] = {**_losses(model_dir), "seconds": round(seconds, 1)}
        ref = results["quiet"] if not name.startswith("pinned") else results.get("pinned", results[name])
        same = results[name]["loss"] == ref["loss"] and results[name]["val_auc"] == ref["val_auc"]
        print(f"{name:<14} {seconds:6.1f} s  bit-identical to {'quiet' if not name.startswith('pinned') else 'pinned'}: "
              f"{same}  losses {['%.6f' % v for v in results[name]['loss']]}  val AUC "
              f"{['%.4f' % v for v in results[name]['val_auc']]}", flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
