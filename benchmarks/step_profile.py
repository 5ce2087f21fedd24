"""Where the demo's cached train step spends its time, by op, from TensorFlow's profiler.

    python benchmarks/step_profile.py [--epochs 3] [--top 12]

The real loop (`train_step_parts.trainer_parts` + `run_epoch`, 16 steps per call) on in-memory feature
batches of the demo config; after one untimed epoch, --epochs epochs run under
`tf.profiler.experimental`. The ops' durations on the executor threads are summed per step and grouped:
matmul (MatMul, _FusedMatMul), batch_norm, dropout, adam (by op name), other. These are thread times:
with two executor threads running ops side by side they add up to more than the wall time, and ops that
overlap slow each other, so read shares, not a timeline. The largest single ops are listed too.
"""

from __future__ import annotations

import collections
import glob
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 3, "Profiled epochs of 128 steps.")
flags.DEFINE_integer("top", 12, "Largest ops to list.")

STEPS = 128
GROUPS = ("batch_norm", "dropout", "adam")


def _group(name: str) -> str:
    for group in GROUPS:
        if group in name:
            return group
    return "matmul" if name.rsplit(":", 1)[-1] in ("MatMul", "_FusedMatMul") else "other"


def main(argv):
    del argv
    import tensorflow as tf
    import train_step_parts as parts
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from ctl_keras.training.loop import device_batches
    from ctl_keras.training.step import run_epoch

    config = timing.config()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    steps = timing.pick(STEPS, 4)
    data = parts.feature_batches(config, steps)
    list(data)
    step, _ = parts.trainer_parts(config, strategy, steps_per_execution=16)
    epoch = lambda: run_epoch(step, device_batches(strategy, data), 1, steps, progress=False)
    epoch()
    logdir = tempfile.mkdtemp(prefix="ctl_step_profile_")
    tf.profiler.experimental.start(logdir)
    for _ in range(FLAGS.epochs):
        epoch()
    tf.profiler.experimental.stop()

    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    host = next(p for p in space.planes if p.name == "/host:CPU")
    per_op = collections.Counter()
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name
            if name not in ("ExecutorState::Process", "ParallelFor"):
                # "[grad] local_head_1/hidden_1/MatMul/MatMul:MatMul": the op inside the triplet model
                short = name.rsplit("ctl_triplet_features_1/", 1)[-1]
                per_op[("[grad] " if "gradient_tape" in name else "") + short] += event.duration_ps
    steps = FLAGS.epochs * steps
    ms = {name: ps / 1e9 / steps for name, ps in per_op.items()}
    total = sum(ms.values())
    groups = collections.Counter()
    for name, value in ms.items():
        groups[_group(name)] += value
    print(f"op thread time per step: {total:.1f} ms over {len(ms)} ops ({steps} profiled steps)")
    for group, value in groups.most_common():
        print(f"  {group:11s} {value:6.2f} ms  {100 * value / total:4.1f}%")
    print("largest ops:")
    for name, value in collections.Counter(ms).most_common(FLAGS.top):
        print(f"  {value:6.3f} ms  {name[:110]}")


if __name__ == "__main__":
    timing.run(main)
