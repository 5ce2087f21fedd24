r"""Raw dataset -> CTL-cropped pairs -> sharded TFRecords (schema: tf_records/README.md), on Apache Beam.

    python -m ctl_keras.build_dataset --dataset=synthetic --out=tf_records/synthetic
    python -m ctl_keras.build_dataset --dataset=home --out=tf_records/home \
        --pairs=home.json --categories=home-cat.json --images_dir=images/ [--workers=2]
    python -m ctl_keras.build_dataset --dataset=home --out=gs://bucket/tf_records/home \
        --pairs=gs://bucket/home.json --categories=gs://bucket/home-cat.json --images_dir=gs://bucket/images \
        --runner=DataflowRunner --project=my-project --region=us-central1 --temp_location=gs://bucket/tmp

Any standard Beam pipeline option passes through (`--runner`, `--direct_num_workers`,
`--direct_running_mode`, Dataflow/Flink/Spark options); the local default is the in-process
FnApiRunner (ctl_keras/builder/pipeline.py says why). Everything that can fail on the whole input
(files, dataset name, options, empty split) fails before the dataset directory changes; bad rows are
skipped and counted. The pipeline writes into a staging directory that replaces the previous build
only when complete, manifest.json last (ctl_keras/builder/swap.py), so a directory is trusted only
when complete, and an interrupted rebuild leaves the previous dataset as it was.
"""

from __future__ import annotations

import functools
import json
import logging as py_logging
import os
import sys
import tempfile
from typing import Callable, Sequence

from ctl_keras import logs

if __name__ == "__main__":  # Beam's imports below load TensorFlow: filter its start-up lines first
    logs.quiet_tensorflow_startup()

import apache_beam as beam  # noqa: E402
from absl import flags, logging  # noqa: E402

from ctl_keras import cli  # noqa: E402
from ctl_keras import config as config_lib  # noqa: E402
from ctl_keras.builder import files, pipeline, stages, swap  # noqa: E402
from ctl_keras.data import stl, street2shop, tfrecords  # noqa: E402

SPLITS = tfrecords.SPLITS


def _local(path: str, tmp: str) -> str:
    """A small metadata file (pairs, categories) as a local path for the readers."""
    if not files.is_url(path):
        return path
    if not files.exists(path):
        raise FileNotFoundError(f"file not found: {path}")
    local = os.path.join(tmp, os.path.basename(path))
    with open(local, "wb") as f:
        f.write(files.read_bytes(path))
    return local


def _read(config, pairs, categories, images_dir, street2shop_dir):
    if config.dataset == "fashion1":
        missing = [n for n, v in (("--street2shop_dir", street2shop_dir), ("--images_dir", images_dir)) if not v]
    else:
        missing = [n for n, v in (("--pairs", pairs), ("--categories", categories), ("--images_dir", images_dir))
                   if not v]
    if missing:
        raise ValueError(f"--dataset={config.dataset} needs {' and '.join(missing)}")
    if not files.is_url(images_dir) and not os.path.isdir(images_dir):
        raise FileNotFoundError(f"images directory not found: {images_dir}")
    if config.dataset == "fashion1":
        if files.is_url(images_dir) or files.is_url(street2shop_dir):
            raise ValueError("--dataset=fashion1 reads image sizes while reading pairs: give local (or mounted) "
                             "--street2shop_dir and --images_dir")
        raw, skipped = street2shop.read_street2shop(street2shop_dir, images_dir)
        return raw, skipped, functools.partial(street2shop.image_path, images_dir)
    with tempfile.TemporaryDirectory() as tmp:
        raw, skipped = stl.read_stl(_local(pairs, tmp), _local(categories, tmp))
    return raw, skipped, functools.partial(stl.image_path, images_dir)


def default_workers() -> int:
    """One CPU stays with the runner, which feeds every worker over gRPC: on 2 CPUs, 2 workers build
    the synthetic set 2.21x slower than the old builder and 1 worker 1.42x (BUILD_NOTES, Beam builder)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def build(config: config_lib.Config, out_dir, *, pairs=None, categories=None, images_dir=None,
          street2shop_dir=None, synthetic_kwargs=None, workers: int | None = None,
          log: Callable[[str], None] = logging.info, beam_args: Sequence[str] = (),
          dedupe_scenes: bool = False) -> dict:
    """Build `config.dataset` into `out_dir`; returns the manifest (also written as manifest.json).

    `workers` sets Beam's --direct_num_workers unless `beam_args` (standard Beam pipeline options,
    e.g. ["--runner=DataflowRunner", ...]) set it. `dedupe_scenes`: drop near-duplicate scenes (dHash,
    data/leakage.py) before the split; the manifest's "leakage" counts what leaks either way.
    """
    out_dir = os.fspath(out_dir)
    workers = default_workers() if workers is None else max(1, int(workers))
    options, beam_flags = pipeline.make_options(list(beam_args), workers)
    p = beam.Pipeline(options=options)  # an unknown --runner fails here, before any output
    flag_values = {"pairs": pairs and os.fspath(pairs), "categories": categories and os.fspath(categories),
                   "images_dir": images_dir and os.fspath(images_dir),
                   "street2shop_dir": street2shop_dir and os.fspath(street2shop_dir),
                   "synthetic_kwargs": synthetic_kwargs or {}, "seed": config.seed,
                   "num_shards": config.num_shards, **beam_flags,
                   **({"dedupe_scenes": True} if dedupe_scenes else {})}
    if config.dataset == "synthetic" and pairs is None:
        from ctl_keras.data import synthetic  # noqa: PLC0415 (only the synthetic dataset needs it)
        if files.is_url(out_dir):
            raise ValueError("generate the synthetic dataset locally, or give --pairs/--categories/--images_dir")
        log(f"generating the synthetic dataset under {os.path.join(out_dir, 'raw')}")
        raw = synthetic.generate(os.path.join(out_dir, "raw"), **(synthetic_kwargs or {}))
        pairs, categories, images_dir = raw["pairs"], raw["categories"], raw["images_dir"]

    raw, skipped, path_of = _read(config, *(v and os.fspath(v) for v in (pairs, categories, images_dir,
                                                                          street2shop_dir)))
    log(f"read {len(raw)} pairs ({sum(skipped.values())} rows skipped)")
    paths = stages.paths_to_check(config, raw, skipped, path_of)
    log(f"checking {len(paths)} images, cropping and writing on Beam's {beam_flags['runner']}")
    bundle = {"config": config, "raw": raw, "skipped": skipped, "path_of": path_of, "flags": flag_values,
              "dedupe_scenes": bool(dedupe_scenes)}
    created = not files.exists(out_dir)
    staging = swap.new_staging(out_dir)
    try:
        pipeline.build_pipeline(p, bundle, paths, staging)
        p.run().wait_until_finish()
        manifest = json.loads(files.read_bytes(files.join(staging, tfrecords.MANIFEST_NAME)))
        if "error" in manifest:
            raise ValueError(manifest["error"])
        swap.swap_in(out_dir, staging, manifest)
    finally:
        swap.remove_staging(staging)
        if created and not files.is_url(out_dir) and not os.listdir(out_dir):
            os.rmdir(out_dir)  # a failed first build leaves nothing behind
    swap.remove_abandoned_staging(out_dir)
    splits = manifest["splits"]
    log(f"built {config.dataset}: {manifest['pairs_kept']}/{manifest['pairs_in']} pairs kept "
        + ", ".join(f"{s}={splits[s]['pairs']}" for s in SPLITS) + f" -> {out_dir}")
    test_leak = manifest.get("leakage", {}).get("test", {})
    if test_leak:
        log(f"leakage: {test_leak['positives_in_train']}/{test_leak['pairs']} test positives occur in train, "
            f"{test_leak['scenes_near_duplicate_of_train']}/{test_leak['scenes']} test scenes are near-duplicates "
            f"of a train scene" + (f"; {manifest['scenes_dropped']['near_duplicate']} near-duplicate scenes dropped"
                                   if dedupe_scenes else ""))
    return manifest


FLAGS = flags.FLAGS


def _define_flags():
    # Only when run as a script: importing the builder (tests, the demo) must not claim flag names
    # such as --dataset that the training CLIs define too.
    flags.DEFINE_enum("dataset", None, list(config_lib.DATASETS), "Dataset to build.")
    flags.DEFINE_string("out", None, "Output directory, e.g. tf_records/<dataset> (or gs://...).")
    flags.DEFINE_string("pairs", None, "STL pairs JSON (fashion2, home; optional for synthetic).")
    flags.DEFINE_string("categories", None, "STL product -> category path JSON.")
    flags.DEFINE_string("images_dir", None, "Directory of <id>.jpg images.")
    flags.DEFINE_string("street2shop_dir", None, "Exact Street2Shop root (fashion1): holds meta/json/.")
    flags.DEFINE_integer("workers", None, "Local Beam workers, i.e. --direct_num_workers (default: CPUs - 1, at most 8).")
    flags.DEFINE_integer("seed", None, "Split / question seed (default: the config's).")
    flags.DEFINE_integer("num_shards", None, "Train pair shards (default: the config's).")
    flags.DEFINE_bool("smoke", False, "Tiny config; for synthetic also a tiny generated set.")
    flags.DEFINE_bool("dedupe_scenes", False, "Drop near-duplicate scenes (dHash of the full scene, "
                      "ctl_keras/data/leakage.py) before the split, keeping one per group.")


SMOKE_SYNTHETIC = {"num_scenes": 48, "scene_size": 96, "product_size": 64}  # --smoke's tiny generated set


def ensure_synthetic(data_dir: str, *, seed: int, smoke: bool = False, explicit: bool = True,
                     log: Callable[[str], None] = logging.info) -> bool:
    """Generate + build the synthetic dataset into `data_dir` when it has no manifest; True if built.

    Only where that cannot clobber anything: the default location (`explicit=False`), or a directory
    that is new or empty — not an interrupted build of the user's own data, nor a typo pointing at
    another directory. The build is exactly `build_dataset --dataset=synthetic --seed=SEED [--smoke]`.
    """
    if files.exists(files.join(data_dir, tfrecords.MANIFEST_NAME)):
        return False
    command = f"`python -m ctl_keras.build_dataset --dataset=synthetic --out={data_dir}" + (" --smoke`" if smoke else "`")
    if explicit and os.path.isdir(data_dir) and os.listdir(data_dir):
        raise ValueError(f"--data_dir {data_dir} is not empty and has no manifest.json (an interrupted build? "
                         f"another directory?); the synthetic dataset is generated only into a new or empty "
                         f"directory: build it with {command}, or pass another --data_dir")
    log(f"no built synthetic dataset in {data_dir}: building it ({command.strip('`')})")
    config = config_lib.get_config("synthetic", smoke=smoke, seed=seed)
    build(config, data_dir, synthetic_kwargs=SMOKE_SYNTHETIC if smoke else None, log=log)
    return True


def main(argv):
    cli.require("dataset", "out")
    overrides = {k: v for k, v in (("seed", FLAGS.seed), ("num_shards", FLAGS.num_shards)) if v is not None}
    synthetic_kwargs = SMOKE_SYNTHETIC if FLAGS.dataset == "synthetic" and FLAGS.smoke else None
    py_logging.getLogger("apache_beam").setLevel(py_logging.WARNING)  # not Beam's per-step INFO lines
    config = config_lib.get_config(FLAGS.dataset, smoke=FLAGS.smoke, **overrides)
    try:
        build(config, FLAGS.out, pairs=FLAGS.pairs, categories=FLAGS.categories, images_dir=FLAGS.images_dir,
              street2shop_dir=FLAGS.street2shop_dir, synthetic_kwargs=synthetic_kwargs, workers=FLAGS.workers,
              log=print, beam_args=argv[1:], dedupe_scenes=FLAGS.dedupe_scenes)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (cli.run): build() has removed its staging directory
        print("build_dataset: interrupted; the previous dataset (if any) is unchanged", file=sys.stderr)
        raise


if __name__ == "__main__":
    cli.run(main, "build_dataset", define_flags=_define_flags, pass_through=True)
