"""How fast the train step runs, and why: host overhead, roofline, and the effect of each switch.

    python benchmarks/train_step.py [--repeats 5] [--cache_dir DIR] [--parts host,roofline,breakdown,switches,variance]

Every figure is a median over `--repeats` epochs (or calls) measured in this one process, through the
real code: `training.step.make_train_step` + `run_epoch` with the real `TripletTask` and model.
- host: the heads shrunk until arithmetic is negligible (embedding 8, hidden 8, grid 1) on in-memory
  feature batches, at steps_per_execution 1 and N, with and without XLA (XLA with N > 1 reads groups of
  N stacked batches, held in memory like the single batches), next to a bare tf.function step of a
  tiny Dense model: the per-step time the host adds, which bounds a GPU's throughput. Also the
  iterator cost per batch: plain, distributed, and through tf.data's `batch(N)`.
- roofline: FLOPs of one cached step (forward + backward, counted from the layer shapes), this
  machine's matmul GFLOP/s on the step's main shape, and the fraction the step achieves; the same for
  one backbone image (FLOPs of every conv/dense layer of ResNet50 at the demo's 112 px).
- switches: the demo configuration's cached epoch (the real feature cache, `FeatureCache.train_dataset`
  through `training.loop.device_batches`, as the trainer does) with XLA, mixed precision and
  steps per call, one at a time and together.
- breakdown: forward, forward + backward, the whole step, without
  dropout, and the main matmul, interleaved round by round (the step's roofline fraction without any
  input or loop cost).
- variance: per-epoch time of the same cached epoch split into input-only and step-only epochs.
- precision: the cached epoch from a cache built under each --backbone_precisions (and mixed_bfloat16 heads
  on the bfloat16 one), interleaved: not in the default parts;
  `--parts=precision --backbone_precisions=float32,bfloat16 [--precision_cache_root=DIR]`.
Results are printed and written to --out as JSON.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Epochs (or calls) per measurement; the median is reported.")
flags.DEFINE_string("data_dir", "tf_records/synthetic", "Built synthetic dataset (built here when missing).")
flags.DEFINE_string("cache_dir", None, "Feature cache of the demo config (default: the trainer's default location).")
flags.DEFINE_list("parts", ["host", "roofline", "breakdown", "switches", "variance"], "Which measurements to run.")
flags.DEFINE_integer("host_steps", 256, "Steps per epoch in the host-overhead measurement.")
flags.DEFINE_integer("per_call", 16, "N of steps_per_execution in the comparisons.")
flags.DEFINE_string("out", "/tmp/ctl_bench/train_step.json", "Where the JSON summary goes.")
flags.DEFINE_list("backbone_precisions", ["float32", "bfloat16"], "Caches compared by the precision part.")
flags.DEFINE_string("precision_cache_root", None, "Where the precision part finds precision_<p>/ caches "
                    "(feature_cache.py's --work_dir); default: the trainer's default locations (built if missing).")


def main(argv):
    del argv
    import train_step_parts as parts

    summary = {"repeats": FLAGS.repeats, "load_average_at_start": os.getloadavg()}
    for name in ("host", "roofline", "breakdown", "switches", "variance", "precision"):
        if name in FLAGS.parts:
            summary[name] = getattr(parts, name)(FLAGS)
            print(json.dumps({name: summary[name]}, indent=1), flush=True)
    summary["load_average_at_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"written to {FLAGS.out}")


if __name__ == "__main__":
    timing.run(main)
