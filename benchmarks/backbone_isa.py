"""One-off: the bfloat16 vs float32 backbone's images/s at batch 32 under a oneDNN instruction-set cap.

    ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI python benchmarks/backbone_isa.py   # AVX-512 without bf16
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/backbone_isa.py

It answers what `--backbone_precision=bfloat16` would cost on a CPU without native bf16 (the answer is in
BUILD_NOTES.md, "bfloat16 backbone"); interleaved, median of 5 calls each.
"""

import os
import statistics
import time

import keras
import tensorflow as tf

from ctl_keras.model import precision
from ctl_keras.model.backbone import build_backbone
from ctl_keras.utils.cpu_features import reported_cpu_flags


def main() -> None:
    keras.utils.set_random_seed(0)
    backbone = build_backbone(112, 7, "none")
    bf16 = precision.bf16_backbone(backbone)
    calls = {"float32": tf.function(lambda x: backbone(x, training=False)),
             "bfloat16": tf.function(lambda x: bf16(x, training=False))}
    x = tf.random.uniform([32, 112, 112, 3], 0, 255, seed=1)
    times = {name: [] for name in calls}
    for call in calls.values():
        call(x)  # trace
    for _ in range(5):
        for name, call in calls.items():
            start = time.perf_counter()
            call(x)["pool5"].numpy()
            times[name].append(time.perf_counter() - start)
    ips = {name: 32 / statistics.median(t) for name, t in times.items()}
    print(f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}: float32 {ips['float32']:.1f} "
          f"images/s, bfloat16 {ips['bfloat16']:.1f} images/s ({ips['bfloat16'] / ips['float32']:.2f}x) | CPU flags "
          f"{reported_cpu_flags()}, load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
