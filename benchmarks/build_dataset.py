"""The Beam dataset builder against the pre-Beam multiprocessing builder, in one run.

    python benchmarks/build_dataset.py [--num_scenes 600] [--repeats 3] [--old_commit f4fd4c4]

Generates the demo's synthetic dataset once (600 scenes by default), recovers the pre-Beam builder
from git (`git show <old_commit>:ctl_keras/build_dataset.py`, loaded as a temporary module; it plans
with the same data/plan.py), then builds the dataset into fresh directories with: old builder at 1
and 2 worker processes, Beam at --direct_num_workers=1 (in_memory) and =2 in each running mode
of --beam_modes. Variants are interleaved within each repetition (the machine is shared and noisy);
prints the median wall time of each and the ratios against the old builder at 1 worker. Also checks
that every variant wrote byte-identical files (manifest.json aside: its flags name the builder).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_scenes", 600, "Synthetic scenes (the demo's 600 by default).")
flags.DEFINE_integer("repeats", 3, "Builds per variant; the median is reported.")
flags.DEFINE_string("old_commit", "f4fd4c4", "Commit holding the pre-Beam ctl_keras/build_dataset.py.")
flags.DEFINE_list("beam_modes", ["multi_processing", "multi_threading"], "Running modes for 2 Beam workers.")
flags.DEFINE_string("work_dir", None, "Scratch directory (default: a new temporary one, removed after).")


def _old_builder(commit: str, work_dir: str):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "-C", repo, "show", f"{commit}:ctl_keras/build_dataset.py"],
                            check=True, capture_output=True, text=True).stdout
    path = os.path.join(work_dir, "old_build_dataset.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("old_build_dataset", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(directory: str) -> dict[str, bytes]:
    return {n: open(os.path.join(directory, n), "rb").read() for n in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, n)) and n != "manifest.json"}


def main(argv):
    del argv
    from ctl_keras import build_dataset
    from ctl_keras.config import get_config
    from ctl_keras.data import synthetic

    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_build_")
    try:
        raw = synthetic.generate(os.path.join(work_dir, "raw"), num_scenes=FLAGS.num_scenes)
        inputs = dict(pairs=raw["pairs"], categories=raw["categories"], images_dir=raw["images_dir"])
        config = get_config("synthetic")
        old = _old_builder(FLAGS.old_commit, work_dir)
        quiet = dict(log=lambda message: None)
        variants = {"old, 1 process": lambda out: old.build(config, out, workers=1, **inputs, **quiet),
                    "old, 2 processes": lambda out: old.build(config, out, workers=2, **inputs, **quiet),
                    "beam, 1 worker": lambda out: build_dataset.build(config, out, workers=1, **inputs, **quiet)}
        for mode in FLAGS.beam_modes:
            variants[f"beam, 2 workers {mode}"] = (
                lambda out, mode=mode: build_dataset.build(config, out, workers=2, **inputs, **quiet,
                                                           beam_args=[f"--direct_running_mode={mode}"]))
        times = {name: [] for name in variants}
        reference, pairs = None, None
        for repeat in range(FLAGS.repeats):
            for i, (name, run) in enumerate(variants.items()):
                out = os.path.join(work_dir, f"out-{repeat}-{i}")
                start = time.perf_counter()
                manifest = run(out)
                times[name].append(time.perf_counter() - start)
                written = _files(out)
                reference = reference or written
                if written != reference:
                    raise SystemExit(f"{name} wrote different bytes than the old builder")
                pairs = manifest["pairs_kept"]
                shutil.rmtree(out)
                print(f"repeat {repeat}: {name}: {times[name][-1]:.1f} s", flush=True)
        base = statistics.median(times["old, 1 process"])
        print(f"\n{FLAGS.num_scenes} scenes, {pairs} pairs, {len(reference)} files, byte-identical across all "
              f"variants; medians of {FLAGS.repeats} (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:34s} {median:6.1f} s   x{median / base:.2f} of old@1   "
                  f"({', '.join(f'{v:.1f}' for v in values)})")
    finally:
        if not FLAGS.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
