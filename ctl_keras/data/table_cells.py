"""The cells of a pairs table (data/table.py): which header name is which column, and what an id, a box
number or an image path cell may hold. One rule for CSV, JSON lines and Parquet:

  - columns: a header name matches the spec's name exactly, else after stripping spaces and ignoring
    case (" Scene " is `scene`) when exactly one header name does; two such names are an error, as is
    a missing column (with the closest header name as a hint). JSON lines have no header: each distinct key set
    is matched the same way, an ambiguous key is left unmatched (its rows are then counted);
  - ids and labels: text or integers; an integer-valued float (pandas turns an id column with a gap
    into float64) is the integer ("1001.0" -> "1001"); booleans, NaN, null and other types are none;
  - box numbers: CSV cells are text parsed as numbers; in JSON lines and Parquet only numbers count:
    a boolean ("width": true would be a 1-pixel box), a string or null is a bad box (a Parquet box
    column whose type is not numeric is refused before reading, naming the column);
  - image paths: text or empty; any other type is a bad row.
"""

from __future__ import annotations

import decimal
import difflib
import math

# Python's csv refuses fields over 128 KiB, and then the whole file; a product description can be
# megabytes. Over this bound the file is refused with the line's number (csv cannot resynchronise
# inside a quoted field, so the rows after it could not be trusted).
FIELD_LIMIT = 64 << 20
_KEY_SETS = 1024  # distinct JSON key sets whose column match is remembered


def match_columns(wanted, header, path: str) -> dict[str, str]:
    """{spec column name: header name} for the names of `wanted` the header holds (see the module doc)."""
    found, folded = {}, {}
    for name in header:
        folded.setdefault(str(name).strip().casefold(), []).append(name)
    for name in wanted:
        close = [name] if name in header else folded.get(name.strip().casefold(), [])
        if len(close) > 1:
            raise ValueError(f"pairs file {path}: column {name!r} is ambiguous: {', '.join(map(repr, close))} "
                             f"(rename one, or name one exactly in the spec's 'columns')")
        if close:
            found[name] = close[0]
    return found


def hint(name: str, header) -> str:
    """"; did you mean 'scenes'?" for the header name closest to a missing column, or ""."""
    close = difflib.get_close_matches(name, [str(h) for h in header], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class RowColumns:
    """Per JSON row, {column: key}: `col` ({column: spec name}) matched to the row's keys as
    match_columns matches a header, once per distinct key set."""

    def __init__(self, col: dict[str, str], path: str):
        self.col, self.path, self._memo = dict(col), path, {}

    def __call__(self, row: dict) -> dict[str, str]:
        keys = tuple(row)
        if keys not in self._memo:
            if len(self._memo) >= _KEY_SETS:
                self._memo.clear()
            try:
                found = match_columns(self.col.values(), keys, self.path)
            except ValueError:  # ambiguous keys: exact names only, the other cells are then missing
                found = {}
            self._memo[keys] = {name: found.get(key, key) for name, key in self.col.items()}
        return self._memo[keys]


def id_text(value) -> str:
    """An id or label cell as text; "" for none (the row is then a bad row)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    return ""


def number(value, text: bool) -> float | None:
    """A box cell as a finite float, or None. `text`: the format stores every cell as text (CSV)."""
    if text:
        if not isinstance(value, str):
            return None
    elif isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return None
    try:
        result = float(value)
    except (ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def image_cell(value) -> str | None:
    """An image path cell: its text ("" when empty or absent), or None when it is not text."""
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else None
