"""Reading + planning a large pairs file, up to the image check: wall time and peak RSS per size.

    python benchmarks/plan_pairs.py --rows=100000,1000000 --repeats=3

Each size runs in fresh subprocesses (peak RSS is per process). The file is an STL pairs file whose
(scene, product) keys are each listed --boxes_per_key times with jittered boxes (the case that was
quadratic: a list scan per row over the key's distinct boxes). Images are
not touched: `stages.dry_plan` assumes every image is fine, as the build does before its check.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import timing  # noqa: F401 (defines --smoke, which the smoke test passes; sizes come from the flags)
from absl import app, flags

flags.DEFINE_list("rows", ["100000", "1000000"], "Pairs-file sizes (rows).")
flags.DEFINE_integer("repeats", 3, "Fresh processes per size; the median is reported.")
flags.DEFINE_integer("boxes_per_key", 1000, "Rows (jittered boxes) per repeated (scene, product) key.")
flags.DEFINE_string("child", None, "Internal: plan this pairs file and print seconds and peak RSS.")
FLAGS = flags.FLAGS
LABEL = "Apparel & Accessories|Shoes"


def write_pairs(path: str, rows: int, boxes_per_key: int) -> str:
    """rows/boxes_per_key repeated keys, each in its own scene."""
    import numpy as np

    rng = np.random.default_rng(0)
    keys = max(1, rows // boxes_per_key)
    records, categories = [], {}
    for k in range(keys):
        scene = f"s{k:07d}"
        for _ in range(boxes_per_key):
            jitter = rng.uniform(-0.01, 0.01, 4)
            records.append({"scene": scene, "product": f"p{k:07d}", "bbox": [round(0.4 + jitter[0], 5),
                            round(0.7 + jitter[1], 5), round(0.6 + jitter[2], 5), round(0.9 + jitter[3], 5)]})
        categories[f"p{k:07d}"] = LABEL
    with open(path, "w") as f:
        json.dump(records[:rows], f)
    with open(path + ".cat.json", "w") as f:
        json.dump(categories, f)
    return path


def child(path: str) -> None:
    from ctl_keras import spec as spec_lib
    from ctl_keras.builder import stages
    from ctl_keras.config import get_config
    from ctl_keras.data import readers

    start = time.perf_counter()
    spec = spec_lib.resolve("synthetic")
    raw, skipped, path_of = readers.read(spec, readers.Sources(pairs=path, categories=path + ".cat.json",
                                                               images_dir=os.path.dirname(path)))
    planned, paths = stages.dry_plan(get_config(spec), raw, skipped, path_of, spec.matcher())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "pairs": len(planned["pairs"])}))


def main(argv):
    if FLAGS.child:
        return child(FLAGS.child)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in map(int, FLAGS.rows):
            path = write_pairs(os.path.join(tmp, f"pairs-{rows}.json"), rows, FLAGS.boxes_per_key)
            runs = [json.loads(subprocess.run([sys.executable, __file__, f"--child={path}"], check=True,
                                              capture_output=True, text=True).stdout.strip().splitlines()[-1])
                    for _ in range(FLAGS.repeats)]
            results[rows] = {"seconds": statistics.median(r["seconds"] for r in runs),
                             "peak_mb": statistics.median(r["peak_mb"] for r in runs)}
            print(f"{rows:>9} rows: {results[rows]['seconds']:.2f} s (median of {FLAGS.repeats}), "
                  f"peak RSS {results[rows]['peak_mb']:.0f} MB", flush=True)
    sizes = sorted(results)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        print(f"{large} / {small} rows: {results[large]['seconds'] / results[small]['seconds']:.1f}x the time "
              f"for {large / small:.0f}x the rows")


if __name__ == "__main__":
    app.run(main)
