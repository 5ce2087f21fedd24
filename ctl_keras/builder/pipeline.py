"""The build as one Beam pipeline, and the pipeline options a user may pass through.

    read pairs (driver) -> check images -> plan + split by scene (one element, images as side input)
      -> crop scenes | re-encode each product image once -> join by product -> encode records
      -> group by output file -> write each file (sorted)
      -> stage the manifest (after every file)

Runs on any Beam runner. The local default is pinned to the Python FnApiRunner: with no --runner,
Beam's DirectRunner first tries Prism, which downloads a binary at run time (fails offline).
"""

from __future__ import annotations

import argparse
import difflib

import apache_beam as beam
from apache_beam.options import pipeline_options as po

from ctl_keras.builder import stages

LOCAL_RUNNER = "FnApiRunner"
# Options that only set local parallelism: the output does not depend on them (tested), so they are
# not part of the dataset's recorded flags and a rebuild with other values gives the same manifest.
_PARALLELISM = ("direct_num_workers", "direct_running_mode")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for cls in {str(c): c for c in po.PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access (as PipelineOptions does)
    return parser


def make_options(beam_args: list[str], workers: int) -> tuple[po.PipelineOptions, dict]:
    """(PipelineOptions, what the manifest records). An argument no Beam option knows is an error
    (Beam itself would only log a warning and drop it, so a typo would silently run the default)."""
    parser = _parser()
    _, unknown = parser.parse_known_args(beam_args)
    if unknown:
        known = [opt for action in parser._actions for opt in action.option_strings]  # pylint: disable=protected-access
        close = difflib.get_close_matches(unknown[0].split("=", 1)[0], known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unparseable pipeline argument: {unknown[0]}.{hint}")
    options = po.PipelineOptions(beam_args)
    explicit = options.get_all_options(drop_default=True)
    standard, direct = options.view_as(po.StandardOptions), options.view_as(po.DirectOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    if "direct_num_workers" not in explicit:
        direct.direct_num_workers = workers
    if "direct_running_mode" not in explicit and direct.direct_num_workers != 1:
        # in_memory runs every bundle in this one process (no speed-up, measured); multi_threading
        # loses elements in Beam 2.77 (BUILD_NOTES.md), so real parallelism means worker processes.
        direct.direct_running_mode = "multi_processing"
    recorded = {k: v for k, v in explicit.items() if k not in _PARALLELISM and k != "runner"}
    return options, {"runner": standard.runner, "pipeline_options": dict(sorted(recorded.items()))}


def build_pipeline(p: beam.Pipeline, bundle: dict, paths: list[str], staging: str) -> None:
    status = (p | "Image paths" >> beam.Create(paths) | "Spread checks" >> beam.Reshuffle()
              | "Check images" >> beam.Map(stages.check_image, bundle.get("tick")))
    planned = (p | "Pairs" >> beam.Create([bundle])
               | "Plan and split" >> beam.Map(stages.plan, status=beam.pvalue.AsDict(status)))
    summary = planned | "Summary" >> beam.Map(
        lambda pl: {"error": pl["error"], "manifest": pl.get("manifest"), "files": pl.get("files", {})})

    markers = planned | "Every file" >> beam.FlatMap(lambda pl: [(name, None) for name in pl.get("files", ())])
    questions = planned | "Questions" >> beam.FlatMap(
        lambda pl: [(name, (0, data)) for name, data in pl.get("questions", {}).items()])
    scenes = (planned | "Pair jobs" >> beam.FlatMap(lambda pl: pl.get("pairs", ()))
              | "Spread pairs" >> beam.Reshuffle() | "Crop scenes" >> beam.Map(stages.crop_scene, bundle.get("tick")))
    images = (planned | "Product images" >> beam.FlatMap(lambda pl: pl.get("product_paths", ()))
              | "Spread products" >> beam.Reshuffle() | "Encode product images" >> beam.Map(stages.product_image, bundle.get("tick")))
    entries = (planned | "Product jobs" >> beam.FlatMap(lambda pl: pl.get("products", ()))
               | "Product entries" >> beam.Map(stages.product_entry))
    records = ((scenes, images, entries) | "Per product" >> beam.Flatten() | "By product" >> beam.GroupByKey()
               | "Encode records" >> beam.FlatMap(stages.assemble))
    written = ((markers, questions, records) | "All values" >> beam.Flatten()
               | "By file" >> beam.GroupByKey() | "Write files" >> beam.Map(lambda kv: stages.write_file(staging, kv)))
    _ = (written | "Written" >> beam.combiners.ToList()
         | "Stage manifest" >> beam.Map(stages.finish, planned=beam.pvalue.AsSingleton(summary), staging=staging))
