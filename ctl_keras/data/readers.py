"""The pairs readers, one per `pairs_format` of a dataset spec: a new format is one file plus one entry here.

A reader takes (spec, Sources, log) and returns (pairs, skipped, path_of):
  pairs    list of stl.RawPair (normalized box, `label` = the source category label);
  skipped  collections.Counter of rows not read, by reason (len(pairs) + sum(skipped) = rows);
  path_of  a picklable callable (image_id, role) -> image path, role "scene" or "product".
Category labels are mapped later, by the spec's LabelMatcher (data/plan.py), so every reader
counts the same reasons for the same labels.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, NamedTuple

from ctl_keras.data import stl, street2shop, table


class Sources(NamedTuple):
    pairs: str | None = None  # the pairs file (STL JSON, or the CSV / JSONL / Parquet table)
    categories: str | None = None  # STL: product -> category path JSON
    images_dir: str | None = None
    street2shop_dir: str | None = None  # Street2Shop: the root holding meta/json/


def _need(spec, sources: Sources, *names: str) -> None:
    missing = [f"--{n}" for n in names if not getattr(sources, n)]
    if missing:
        raise ValueError(f"--dataset={spec.name} (pairs_format {spec.pairs_format}) needs {' and '.join(missing)}")
    images_dir = sources.images_dir
    if images_dir and "://" not in images_dir and not os.path.isdir(images_dir):
        raise FileNotFoundError(f"images directory not found: {images_dir}")


def read_stl(spec, sources: Sources, log):
    _need(spec, sources, "pairs", "categories", "images_dir")
    raw, skipped = stl.read_stl(sources.pairs, sources.categories)
    return raw, skipped, functools.partial(stl.image_path, sources.images_dir)


def read_street2shop(spec, sources: Sources, log):
    _need(spec, sources, "street2shop_dir", "images_dir")
    if "://" in sources.images_dir or "://" in sources.street2shop_dir:
        raise ValueError(f"--dataset={spec.name} reads image sizes while reading pairs: give local (or mounted) "
                         "--street2shop_dir and --images_dir")
    raw, skipped = street2shop.read_street2shop(sources.street2shop_dir, sources.images_dir)
    return raw, skipped, functools.partial(street2shop.image_path, sources.images_dir)


def read_table(spec, sources: Sources, log):
    _need(spec, sources, "pairs", "images_dir")
    pairs, skipped, paths = table.read_table(spec, sources.pairs, sources.images_dir)
    missing = paths.missing_scenes
    if missing["count"]:
        log(f"{missing['count']} scene images not found (their sizes are needed for bbox {spec.bbox}); "
            f"the first looked for: {missing['first']}")
    return pairs, skipped, paths


READERS: dict[str, Callable] = {"stl": read_stl, "street2shop": read_street2shop,
                                "csv": read_table, "jsonl": read_table, "parquet": read_table}


def read(spec, sources: Sources, log: Callable[[str], None] = lambda line: None):
    """The spec's reader on `sources` (local paths; build_dataset copies remote metadata files first)."""
    return READERS[spec.pairs_format](spec, sources, log)
