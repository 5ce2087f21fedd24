"""Build a dataset: read the pairs, plan the CTL crops, run the Beam pipeline into a staging directory
and swap it in (one build per directory, swap.exclusive_build). `ctl build` (ctl_keras/cli/build.py)
is its command; train, experiments and the Python API call it too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Sequence

import apache_beam as beam
from absl import logging

from ctl_keras import config as config_lib
from ctl_keras import spec as spec_lib
from ctl_keras.builder import files, pipeline, stages, swap
from ctl_keras.data import readers, tfrecords
from ctl_keras.utils import atomic, progress

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


def _sources(spec, pairs, categories, images_dir, street2shop_dir) -> readers.Sources:
    """Flags first, then the spec's `paths` (relative to the spec file)."""
    defaults = dict(spec.paths)
    given = {"pairs": pairs, "categories": categories, "images_dir": images_dir, "street2shop_dir": street2shop_dir}
    return readers.Sources(**{k: (os.fspath(v) if v else defaults.get(k)) for k, v in given.items()})


def _read(spec, sources: readers.Sources, log):
    """The spec's reader; small remote metadata files (pairs, categories) are copied locally first."""
    with tempfile.TemporaryDirectory() as tmp:
        local = sources._replace(**{k: _local(getattr(sources, k), tmp) for k in ("pairs", "categories")
                                    if getattr(sources, k)})
        return readers.read(spec, local, log)


def default_workers() -> int:
    """One CPU stays with the runner, which feeds every worker over gRPC: on 2 CPUs, 2 workers build
    the synthetic set 2.21x slower than the old builder and 1 worker 1.42x (BUILD_NOTES, Beam builder)."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def _check_spec(config, spec) -> None:
    if (config.dataset, tuple(config.categories), tuple(config.crop_sides)) != (
            spec.name, spec.category_names, spec.sides):
        raise ValueError(f"config {config.dataset!r} {list(config.categories)} does not come from the spec "
                         f"{spec.name!r} {list(spec.category_names)}: build get_config(spec)")


def _generate(spec, out_dir, synthetic_kwargs, log) -> readers.Sources:
    from ctl_keras.data import synthetic  # noqa: PLC0415 (only a generated dataset needs it)

    if files.is_url(out_dir):
        raise ValueError("generate the synthetic dataset locally, or give --pairs/--categories/--images_dir")
    raw_dir = os.path.join(out_dir, "raw")
    log(f"generating the {spec.name} dataset under {raw_dir}")
    with atomic.full_disk_names(raw_dir, "the generated images (the built dataset, if any, is unchanged)"):
        raw = synthetic.generate(raw_dir, spec=spec, **(synthetic_kwargs or {}))
    return readers.Sources(pairs=raw["pairs"], categories=raw["categories"], images_dir=raw["images_dir"])


def read_pairs(config, spec=None, *, pairs=None, categories=None, images_dir=None, street2shop_dir=None,
               log: Callable[[str], None] = logging.info) -> dict:
    """Read and plan without touching any image but the headers pixel boxes need: what `--dry_run`
    prints. -> {"spec", "sources", "raw", "skipped", "path_of", "plan" (every image assumed fine),
    "paths" (the images the build will check)}."""
    spec = spec_lib.resolve(config.dataset) if spec is None else spec_lib.resolve(spec)
    _check_spec(config, spec)
    sources = _sources(spec, pairs, categories, images_dir, street2shop_dir)
    raw, skipped, path_of = _read(spec, sources, log)
    planned, paths = stages.dry_plan(config, raw, skipped, path_of, spec.matcher())
    return {"spec": spec, "sources": sources, "raw": raw, "skipped": skipped, "path_of": path_of,
            "plan": planned, "paths": paths}


def build(config: config_lib.Config, out_dir, *, spec=None, pairs=None, categories=None, images_dir=None,
          street2shop_dir=None, synthetic_kwargs=None, workers: int | None = None,
          log: Callable[[str], None] = logging.info, beam_args: Sequence[str] = (),
          dedupe_scenes: bool = False) -> dict:
    """Build the dataset of `spec` (default: the built-in named `config.dataset`) into `out_dir`;
    returns the manifest (also written as manifest.json, with the resolved spec in it).

    `workers` sets Beam's --direct_num_workers unless `beam_args` (standard Beam pipeline options,
    e.g. ["--runner=DataflowRunner", ...]) set it. `dedupe_scenes`: drop near-duplicate scenes (dHash,
    data/leakage.py) before the split; the manifest's "leakage" counts what leaks either way.
    """
    out_dir = os.fspath(out_dir)
    spec = spec_lib.resolve(config.dataset) if spec is None else spec_lib.resolve(spec)
    _check_spec(config, spec)
    workers = default_workers() if workers is None else max(1, int(workers))
    options, beam_flags = pipeline.make_options(list(beam_args), workers)
    p = beam.Pipeline(options=options)  # an unknown --runner fails here, before any output
    flag_values = {"pairs": pairs and os.fspath(pairs), "categories": categories and os.fspath(categories),
                   "images_dir": images_dir and os.fspath(images_dir),
                   "street2shop_dir": street2shop_dir and os.fspath(street2shop_dir),
                   "synthetic_kwargs": synthetic_kwargs or {}, "seed": config.seed,
                   "num_shards": config.num_shards, **beam_flags,
                   **({"dedupe_scenes": True} if dedupe_scenes else {})}
    with swap.exclusive_build(out_dir) as created:  # one build per directory, from here to the end
        try:
            if spec.generator and pairs is None and not dict(spec.paths).get("pairs"):
                generated = _generate(spec, out_dir, synthetic_kwargs, log)
                pairs, categories, images_dir = generated.pairs, generated.categories, generated.images_dir
            read = read_pairs(config, spec, pairs=pairs, categories=categories, images_dir=images_dir,
                              street2shop_dir=street2shop_dir, log=log)
            raw, skipped, paths = read["raw"], read["skipped"], read["paths"]
            log(f"read {len(raw)} pairs ({sum(skipped.values())} rows skipped)")
            log(f"checking {len(paths)} images, cropping and writing on Beam's {beam_flags['runner']}")
            staging = swap.new_staging(out_dir)
            # One bar for the image work: checks, then (once planned) scene crops and product encodings.
            images = progress.Progress(total=len(paths), desc="build: images checked + encoded", unit="image")
            bundle = {"config": config, "spec": spec, "raw": raw, "skipped": skipped, "path_of": read["path_of"],
                      "flags": flag_values, "tick": images.ticker(), "dedupe_scenes": bool(dedupe_scenes)}
            try:
                with atomic.full_disk_names(out_dir, "the dataset (the previous one, if any, is unchanged)"):
                    pipeline.build_pipeline(p, bundle, paths, staging)
                    p.run().wait_until_finish()
                    manifest = json.loads(files.read_bytes(files.join(staging, tfrecords.MANIFEST_NAME)))
                    if "error" in manifest:
                        raise ValueError(manifest["error"])
                    swap.swap_in(out_dir, staging, manifest)
            finally:
                images.close()
                swap.remove_staging(staging)
        except BaseException:
            if created and not files.is_url(out_dir):  # a new directory: everything in it is this build's
                shutil.rmtree(os.path.join(out_dir, "raw"), ignore_errors=True)
            raise
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
    command = f"`ctl build --dataset=synthetic --out={data_dir}" + (" --smoke`" if smoke else "`")
    if explicit and os.path.isdir(data_dir) and os.listdir(data_dir):
        raise ValueError(f"--data_dir {data_dir} is not empty and has no manifest.json (an interrupted build? "
                         f"another directory?); the synthetic dataset is generated only into a new or empty "
                         f"directory: build it with {command}, or pass another --data_dir")
    log(f"no built synthetic dataset in {data_dir}: building it ({command.strip('`')})")
    config = config_lib.get_config("synthetic", smoke=smoke, seed=seed)
    build(config, data_dir, synthetic_kwargs=SMOKE_SYNTHETIC if smoke else None, log=log)
    return True
