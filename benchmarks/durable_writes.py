"""What fsync costs (issue 23 item 16): a checkpoint save and a catalog-index write, with and without
the fsyncs of ctl_keras/atomic.py, interleaved in rounds on the same disk; medians and their ratio.

    python benchmarks/durable_writes.py [--rounds=15] [--products=100000] [--dir=/tmp]

Checkpoint: TrainState.save of the full paper-size hybrid heads + Adam slots (what `train` saves once
per epoch; the backbone is frozen and not checkpointed). Index: save_index of `--products` random
128-d rows in 5 categories. "off" replaces the fsync helper with a no-op for that call only.
--dir picks the filesystem (fsync cost is the disk's: tmpfs is free, a cloud disk is not).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import interleaved_times  # noqa: E402


def _fsync_off(module):
    real = module.fsync_path

    def run(fn):
        module.fsync_path = lambda path: None
        try:
            fn()
        finally:
            module.fsync_path = real
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--smoke", action="store_true", help="tests/test_benchmarks_smoke.py: the tiny config")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from ctl_keras import atomic
    from ctl_keras.config import get_config
    from ctl_keras.model.ctl import CTLHeads
    from ctl_keras.retrieval.index import CatalogIndex, save_index
    from ctl_keras.training import checkpointing

    work = tempfile.mkdtemp(prefix="durable-", dir=args.dir)
    config = get_config("home", smoke=args.smoke, variant="hybrid")
    heads = CTLHeads(config)
    heads.global_head.build((None, 2048))
    heads.local_head.build((None, 1024))
    heads.attention_head.build((None, 1024))
    heads.category_embedding.build((None,))
    optimizer = tf.keras.optimizers.Adam()
    optimizer.build(heads.trainable_variables)
    params = sum(int(np.prod(v.shape)) for v in heads.variables)
    state = checkpointing.TrainState(work, heads.variables, optimizer, max_to_keep=2)
    epoch = [0]

    def save():
        epoch[0] += 1
        state.save(epoch[0])

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.products, 128)).astype(np.float32)
    index = CatalogIndex([f"p{i}" for i in range(args.products)], rng.integers(0, 5, args.products),
                         emb / np.linalg.norm(emb, axis=1, keepdims=True), [f"c{i}" for i in range(5)])
    index_path = os.path.join(work, "catalog")
    off_ckpt, off_atomic = _fsync_off(checkpointing), _fsync_off(atomic)
    times = interleaved_times({
        "checkpoint, fsync": save,
        "checkpoint, no fsync": lambda: off_ckpt(save),
        "index, fsync": lambda: save_index(index, index_path),
        "index, no fsync": lambda: off_atomic(lambda: save_index(index, index_path)),
    }, args.rounds)
    med = {name: 1000 * statistics.median(t) for name, t in times.items()}
    ckpt_mb = sum(os.path.getsize(os.path.join(work, "checkpoints", n)) for n in os.listdir(os.path.join(work, "checkpoints"))
                  if n.startswith(f"ckpt-{epoch[0]}.")) / 1e6
    index_mb = os.path.getsize(index_path + ".npz") / 1e6 if os.path.exists(index_path + ".npz") else float("nan")
    print(f"dir {work} ({args.rounds} interleaved rounds; {params:,} head parameters, checkpoint {ckpt_mb:.1f} MB; "
          f"index {args.products:,} x 128, npz {index_mb:.1f} MB)")
    shutil.rmtree(work, ignore_errors=True)
    for kind in ("checkpoint", "index"):
        on, off = med[f"{kind}, fsync"], med[f"{kind}, no fsync"]
        print(f"{kind:10s} median {on:8.1f} ms with fsync, {off:8.1f} ms without: ratio {on / off:.2f}x "
              f"(+{on - off:.1f} ms)")


if __name__ == "__main__":
    main()
