r"""Raw dataset -> CTL-cropped pairs -> sharded TFRecords (schema: tf_records/README.md), on Apache Beam.

    ctl build --dataset=synthetic --out=tf_records/synthetic
    ctl build --dataset=home --out=tf_records/home \
        --pairs=home.json --categories=home-cat.json --images_dir=images/ [--workers=2]
    ctl build --dataset=home --out=gs://bucket/tf_records/home \
        --pairs=gs://bucket/home.json --categories=gs://bucket/home-cat.json --images_dir=gs://bucket/images \
        --runner=DataflowRunner --project=my-project --region=us-central1 --temp_location=gs://bucket/tmp

Any standard Beam pipeline option passes through (`--runner`, `--direct_num_workers`,
`--direct_running_mode`, Dataflow/Flink/Spark options); the local default is the in-process
FnApiRunner (ctl_keras/builder/pipeline.py says why). Everything that can fail on the whole input
(files, dataset name, options, empty split) fails before the dataset directory changes; bad rows are
skipped and counted. The pipeline writes into a staging directory that replaces the previous build
only when complete, manifest.json last (ctl_keras/builder/swap.py), so a directory is trusted only
when complete, and an interrupted rebuild leaves the previous dataset as it was. One build at a time
per directory: a second refuses at once, naming the first's pid (swap.exclusive_build).
"""

from __future__ import annotations

import logging as py_logging
import os
import sys

from ctl_keras.utils import logs

if __name__ == "__main__":  # Beam's imports below load TensorFlow: filter its start-up lines first
    logs.quiet_tensorflow_startup()

from absl import flags

from ctl_keras import cli
from ctl_keras.cli import options
from ctl_keras import config as config_lib
from ctl_keras import spec as spec_lib
from ctl_keras.builder import files
from ctl_keras.builder.build import SMOKE_SYNTHETIC, build, read_pairs

FLAGS = flags.FLAGS


def _define_flags():
    # Only when run as a script: importing the builder (tests, the demo) must not claim flag names
    # such as --dataset that the training CLIs define too.
    options.define("dataset", "out", "pairs", "categories", "street2shop_dir", "workers", "seed", "smoke", help_texts={
        "dataset": "A built-in dataset (" + ", ".join(spec_lib.builtin_names()) + ") or the path of a dataset "
                   "spec file (README: 'Your own data').",
        "out": "Output directory (default: tf_records/<the spec's name>; or gs://...).",
        "pairs": "Pairs file: STL JSON, or the CSV / JSONL / Parquet table of the spec's pairs_format (default: "
                 "the spec's paths.pairs; optional for a generated dataset).",
        "categories": "STL: product -> category path JSON.",
        "street2shop_dir": "Exact Street2Shop root (fashion1): holds meta/json/.",
        "workers": "Local Beam workers, i.e. --direct_num_workers (default: CPUs - 1, at most 8).",
        "seed": "Split / question seed (default: the config's).",
        "smoke": "Tiny config; for synthetic also a tiny generated set."})
    flags.DEFINE_string("images_dir", None, "Directory of the scene and product images.")
    flags.DEFINE_bool("dry_run", False, "Read the pairs (and image headers where boxes are in pixels), print per "
                      "category the rows read, the drops by reason and the pairs that survive the CTL crop; "
                      "write nothing.")
    flags.DEFINE_integer("num_shards", None, "Train pair shards (default: the config's).")
    flags.DEFINE_bool("dedupe_scenes", False, "Drop near-duplicate scenes (dHash of the full scene, "
                      "ctl_keras/data/leakage.py) before the split, keeping one per group.")


def main(argv):
    cli.require("dataset")
    spec = spec_lib.resolve(FLAGS.dataset)
    overrides = {k: v for k, v in (("seed", FLAGS.seed), ("num_shards", FLAGS.num_shards)) if v is not None}
    synthetic_kwargs = SMOKE_SYNTHETIC if spec.generator and FLAGS.smoke else None
    py_logging.getLogger("apache_beam").setLevel(py_logging.WARNING)  # not Beam's per-step INFO lines
    config = config_lib.get_config(spec, smoke=FLAGS.smoke, **overrides)
    if FLAGS.dry_run:
        from ctl_keras.builder import dry_run  # noqa: PLC0415

        read = read_pairs(config, spec, pairs=FLAGS.pairs, categories=FLAGS.categories, images_dir=FLAGS.images_dir,
                          street2shop_dir=FLAGS.street2shop_dir, log=print)
        print("\n".join(dry_run.summary_lines(read)))
        return
    out = FLAGS.out or os.path.join("tf_records", spec.name)
    if not files.is_url(out):
        cli.check_output_dir(out, "out")
    try:
        build(config, out, spec=spec, pairs=FLAGS.pairs, categories=FLAGS.categories, images_dir=FLAGS.images_dir,
              street2shop_dir=FLAGS.street2shop_dir, synthetic_kwargs=synthetic_kwargs, workers=FLAGS.workers,
              log=print, beam_args=argv[1:], dedupe_scenes=FLAGS.dedupe_scenes)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (cli.run): build() has removed its staging directory
        print("build_dataset: interrupted; the previous dataset (if any) is unchanged", file=sys.stderr)
        raise


if __name__ == "__main__":
    cli.run(main, "build_dataset", define_flags=_define_flags, pass_through=True)
