"""A dataset spec file's values: JSON, or TOML by its .toml suffix, with every key given once.

JSON keeps the last of two equal keys without a word: a second `"shoes": [...]` in `categories`
would silently take the first one's place (its real rows then counted as unknown_category). Such a
file is refused, naming the key by its dotted path. TOML refuses a duplicate key itself; its error
("Cannot overwrite a value (at line 6, column 22)") gains the key's name. Pure Python (no TensorFlow).
"""

from __future__ import annotations

import json
import re
from typing import Any


class _Object(dict):
    """A parsed JSON object that remembers the first key it was given twice."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _duplicate_path(value: Any, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first key given twice in a parsed document, or None."""
    if isinstance(value, dict):
        if getattr(value, "duplicate", None) is not None:
            return ".".join((*path, value.duplicate))
        children = value.items()
    elif isinstance(value, list):
        children = ((f"{path[-1] if path else ''}[{i}]", v) for i, v in enumerate(value))
        path = path[:-1]
    else:
        return None
    for key, child in children:
        found = _duplicate_path(child, (*path, key))
        if found is not None:
            return found
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _toml_duplicate(path: str, text: str, message: str) -> str | None:
    """`tomllib`'s duplicate-key error, with the key: the dotted path of the line's key under its table."""
    found = re.match(r"Cannot overwrite a value \(at line (\d+), column \d+\)", message)
    if not found:
        return None
    lines = text.splitlines()
    number = int(found.group(1))
    if not 0 < number <= len(lines) or "=" not in lines[number - 1]:
        return None
    key = lines[number - 1].split("=", 1)[0].strip().strip("\"'")
    for line in reversed(lines[:number - 1]):  # the [table] the line belongs to, if any
        table = re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if table:
            key = f"{table.group(1).strip()}.{key}"
            break
    return f"{path}: {key}: is given twice (line {number}); TOML allows a key once"


def load(path: str) -> Any:
    """The values of the spec file at `path`; ValueError in one line for a file that does not parse or
    gives a key twice."""
    try:
        if path.endswith(".toml"):
            import tomllib  # noqa: PLC0415 (Python 3.11+)

            with open(path, "rb") as f:
                data = f.read()
            try:
                return tomllib.loads(data.decode("utf-8"))
            except tomllib.TOMLDecodeError as e:
                duplicate = _toml_duplicate(path, data.decode("utf-8"), str(e))
                if duplicate:
                    raise ValueError(duplicate) from None
                raise
        with open(path, encoding="utf-8-sig") as f:
            values = json.load(f, object_pairs_hook=_object)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, TOMLDecodeError
        if str(e).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: not a valid spec file: {' '.join(str(e).split())}") from None
    duplicate = _duplicate_path(values)
    if duplicate is not None:
        raise ValueError(f"{path}: {duplicate}: is given twice (JSON would keep only the last, silently "
                         "dropping the first); give each key once")
    return _plain(values)
