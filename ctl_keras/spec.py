"""A dataset is a spec file: its name, its taxonomy, its crop rule and how its pairs are stored.

    {"name": "myshop",
     "categories": {"boots": ["Shop|Feet|Boots|*"], "bags": ["Shop|Bags", "Shop|Totes"]},
     "drop": ["Shop|Dresses|*"],
     "crop_sides": "top_bottom",
     "pairs_format": "csv",
     "bbox": "pixel_ltwh",
     "defaults": {"image_size": 112, "epochs": 40}}

The four built-in datasets (fashion1, fashion2, home, synthetic) are spec files shipped in
`ctl_keras/datasets/`, read by this same code; `--dataset` takes one of their names or the path of a
spec file. Pure Python (no TensorFlow): flags can be checked in a fraction of a second.

Label rules: a label ending in `|*` matches that path and every label under it
(`"Shop|Feet|*"` matches `Shop|Feet` and `Shop|Feet|Boots|Ankle`); any other label matches exactly.
When several patterns match one label, the most specific wins: an exact label over any `|*`, and
a longer `|*` path over a shorter one (so `"decor": ["Home|Decor|*"]` and `"rugs": ["Home|Decor|Rugs"]`
coexist, and a `drop` entry can carve a path out of a category). One pattern listed twice (in two
categories, or in a category and in `drop`) is an error, and so is a key given twice (spec_load.py).
A category name is letters and digits with spaces or `_-.&` inside: what the service can be asked for.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from ctl_keras import spec_load

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets")
PAIRS_FORMATS = ("stl", "street2shop", "csv", "jsonl", "parquet")
TABLE_FORMATS = ("csv", "jsonl", "parquet")
BBOX_FORMATS = ("normalized_ltrb", "pixel_ltrb", "pixel_ltwh")
CROP_SIDES = {"top_bottom": ("top", "bottom"), "all": ("top", "bottom", "left", "right")}
GENERATORS = ("synthetic",)
# The box format a fixed-format reader implies (tables say theirs).
IMPLIED_BBOX = {"stl": "normalized_ltrb", "street2shop": "pixel_ltwh"}
PATH_KEYS = ("pairs", "categories", "images_dir", "street2shop_dir")
KEYS = ("name", "description", "categories", "drop", "crop_sides", "pairs_format", "bbox", "defaults",
        "columns", "paths", "generator")
REQUIRED = ("name", "categories", "pairs_format")
WILDCARD = "|*"
# A category name: letters and digits (any script), and these inside (a space too, not at either end).
CATEGORY_NAME_CHARS = " _-.&"
MAX_CATEGORY_NAME = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # used in default paths (tf_records/<name>)


def builtin_names() -> tuple[str, ...]:
    return tuple(sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".json")))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    categories: tuple[tuple[str, tuple[str, ...]], ...]
    pairs_format: str
    bbox: str
    crop_sides: str = "top_bottom"
    drop: tuple[str, ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()
    columns: tuple[tuple[str, str], ...] = ()  # table formats: our column name -> the file's
    paths: tuple[tuple[str, str], ...] = ()  # default inputs, relative to the spec file's directory
    generator: str | None = None  # "synthetic": build_dataset generates the pairs when --pairs is absent
    description: str = ""
    source: str = ""  # where it was read from: "builtin" or the spec file's path (not part of to_dict)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.categories)

    @property
    def sides(self) -> tuple[str, ...]:
        return CROP_SIDES[self.crop_sides]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what a spec file holds); `from_dict(to_dict())` gives the same spec."""
        # categories as [name, labels] pairs: the order is the model's category ids, and sorted-key
        # JSON (the manifest) would reorder an object's keys.
        out = {"name": self.name, "categories": [[n, list(labels)] for n, labels in self.categories],
               "drop": list(self.drop), "crop_sides": self.crop_sides, "pairs_format": self.pairs_format,
               "bbox": self.bbox, "defaults": dict(self.defaults), "columns": dict(self.columns),
               "paths": dict(self.paths)}
        if self.generator:
            out["generator"] = self.generator
        if self.description:
            out["description"] = self.description
        return out

    def identity(self) -> dict[str, Any]:
        """What makes two specs the same dataset: to_dict without the input paths and the description."""
        return {k: v for k, v in self.to_dict().items() if k not in ("paths", "description")}

    def matcher(self) -> "LabelMatcher":
        return LabelMatcher(self.categories, self.drop)


DROP = object()  # a label's target when it is dropped on purpose


class LabelMatcher:
    """Source label -> category name, DROP, or None (unknown). Picklable (Beam ships it)."""

    def __init__(self, categories, drop=()):
        self.exact, self.prefixes = {}, {}
        for target, labels in [*categories, (DROP, drop)]:
            for label in labels:
                if label.endswith(WILDCARD):
                    self.prefixes[label[:-len(WILDCARD)]] = target
                else:
                    self.exact[label] = target
        self._longest_first = sorted(self.prefixes, key=len, reverse=True)

    def __call__(self, label: str):
        if label in self.exact:
            return self.exact[label]
        for prefix in self._longest_first:
            if label == prefix or label.startswith(prefix + "|"):
                return self.prefixes[prefix]
        return None

    def __reduce__(self):
        categories = {}
        for table, suffix in ((self.exact, ""), (self.prefixes, WILDCARD)):
            for label, target in table.items():
                categories.setdefault(target, []).append(label + suffix)
        drop = categories.pop(DROP, [])
        return _rebuild_matcher, (tuple((n, tuple(v)) for n, v in categories.items()), tuple(drop))


def _rebuild_matcher(categories, drop):
    return LabelMatcher(categories, drop)


def _fail(where: str, key: str, message: str):
    raise ValueError(f"{where}: {key}: {message}")


def _strings(value, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        _fail(where, key, "must be a list of non-empty strings")
    return tuple(value)


def _string_map(value, where: str, key: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        _fail(where, key, "must be an object of strings")
    return tuple(value.items())


def category_name_problem(name: str) -> str | None:
    """Why `name` cannot be a category, or None. The look service, its page and `recommend look
    --categories` split the asked names on commas and strip them, so a comma or an outer space makes a
    category impossible to ask for; an image catalog names its category directories after them ('/')."""
    if not name.strip():
        return "is empty"
    if len(name) > MAX_CATEGORY_NAME:
        return f"is longer than {MAX_CATEGORY_NAME} characters"
    if name != name.strip():
        return "starts or ends with whitespace"
    if not name[0].isalnum():
        return "must start with a letter or a digit"
    bad = next((c for c in name if not (c.isalnum() or c in CATEGORY_NAME_CHARS)), None)
    return None if bad is None else f"contains {bad!r}"


def _categories(value, where: str, check_names: bool = True) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if isinstance(value, list) and all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) for v in value):
        items = [tuple(v) for v in value]  # the ordered form to_dict writes
        if len({name for name, _ in items}) != len(items):
            _fail(where, "categories", "lists a category twice")
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        items = []
    if not items:
        _fail(where, "categories", "must be a non-empty object: category name -> list of source labels")
    out = []
    for name, labels in items:
        problem = category_name_problem(name) if check_names else None
        if problem:
            _fail(where, "categories", f"category name {name!r} {problem}: use letters, digits, and inside "
                  f"spaces or {' '.join(CATEGORY_NAME_CHARS.strip())} (at most {MAX_CATEGORY_NAME} characters; "
                  "the service splits asked categories on commas and strips spaces)")
        if not name.strip():
            _fail(where, "categories", "a category name is empty")
        if isinstance(labels, list) and not labels:
            _fail(where, f"categories.{name}", "has no labels")
        out.append((name, _strings(labels, where, f"categories.{name}")))
    return tuple(out)


def _check_claims(categories, drop, where: str) -> None:
    owner: dict[str, str] = {}
    for name, labels in [*categories, ("drop", drop)]:
        for label in labels:
            if label in owner:
                first = owner[label]
                key = "drop" if name == "drop" else f"categories.{name}"
                _fail(where, key, f"label {label!r} is already claimed by "
                      + ("drop" if first == "drop" else f"category {first!r}"))
            owner[label] = name


def from_dict(values: Any, where: str = "<spec>", *, check_names: bool = True) -> DatasetSpec:
    """Validate a spec's JSON form; every error is one line naming `where` and the key.
    `check_names=False` for a manifest's recorded spec: data built before the category-name rule
    stays readable (a rebuild reads its spec file, which must then pass)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: a dataset spec must be a JSON object")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        _fail(where, unknown[0], f"unknown key (expected some of {', '.join(KEYS)})")
    for key in REQUIRED:
        if key not in values:
            _fail(where, key, "is required")
    name = values["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        _fail(where, "name", f"{name!r} must be 1-64 letters, digits, '_', '.' or '-' (it names directories)")
    categories = _categories(values["categories"], where, check_names)
    drop = _strings(values.get("drop", []), where, "drop")
    _check_claims(categories, drop, where)
    fmt = values["pairs_format"]
    if fmt not in PAIRS_FORMATS:
        _fail(where, "pairs_format", f"unknown format {fmt!r}; expected one of {', '.join(PAIRS_FORMATS)}")
    bbox = values.get("bbox", IMPLIED_BBOX.get(fmt))
    if bbox is None:
        _fail(where, "bbox", f"is required for pairs_format {fmt!r} (one of {', '.join(BBOX_FORMATS)})")
    if bbox not in BBOX_FORMATS:
        _fail(where, "bbox", f"unknown box format {bbox!r}; expected one of {', '.join(BBOX_FORMATS)}")
    if fmt in IMPLIED_BBOX and bbox != IMPLIED_BBOX[fmt]:
        _fail(where, "bbox", f"pairs_format {fmt!r} stores {IMPLIED_BBOX[fmt]} boxes, not {bbox!r}")
    crop_sides = values.get("crop_sides", "top_bottom")
    if crop_sides not in CROP_SIDES:
        _fail(where, "crop_sides", f"{crop_sides!r}; expected one of {', '.join(CROP_SIDES)} (paper §3.3)")
    defaults = values.get("defaults", {})
    if not isinstance(defaults, dict):
        _fail(where, "defaults", "must be an object of Config fields (image_size, epochs, ...)")
    columns = _string_map(values.get("columns", {}), where, "columns")
    if columns and fmt not in TABLE_FORMATS:
        _fail(where, "columns", f"only table formats ({', '.join(TABLE_FORMATS)}) have columns")
    paths = _string_map(values.get("paths", {}), where, "paths")
    for key, _ in paths:
        if key not in PATH_KEYS:
            _fail(where, f"paths.{key}", f"unknown input (expected some of {', '.join(PATH_KEYS)})")
    generator = values.get("generator")
    if generator is not None and generator not in GENERATORS:
        _fail(where, "generator", f"unknown generator {generator!r}; expected one of {', '.join(GENERATORS)}")
    description = values.get("description", "")
    if not isinstance(description, str):
        _fail(where, "description", "must be a string")
    return DatasetSpec(name=name, categories=categories, pairs_format=fmt, bbox=bbox, crop_sides=crop_sides,
                       drop=drop, defaults=tuple(defaults.items()), columns=columns, paths=paths,
                       generator=generator, description=description, source=where)


def read(path: str | os.PathLike) -> DatasetSpec:
    """A spec file (JSON; TOML by its .toml suffix), validated."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset spec file not found: {path}")
    spec = from_dict(spec_load.load(path), path)  # a key given twice is refused there
    base = os.path.dirname(os.path.abspath(path))
    paths = tuple((k, v if "://" in v else os.path.join(base, v)) for k, v in spec.paths)
    return dataclasses.replace(spec, paths=paths)


def resolve(dataset: "str | DatasetSpec | dict") -> DatasetSpec:
    """A built-in name, a spec file's path, a spec's JSON form (e.g. from a manifest) or a spec."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    if isinstance(dataset, dict):
        return from_dict(dataset, "manifest spec", check_names=False)
    dataset = os.fspath(dataset)
    if dataset in builtin_names():
        spec = read(os.path.join(BUILTIN_DIR, f"{dataset}.json"))
        return dataclasses.replace(spec, source="builtin")
    if os.path.isfile(dataset) or dataset.endswith((".json", ".toml")) or os.sep in dataset:
        return read(dataset)
    raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(builtin_names())} "
                     "or the path of a dataset spec file (README: 'Your own data')")
