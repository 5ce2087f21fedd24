"""Atomic file writes: write under a temporary name in the same directory, then `os.replace`.

A reader (or a later run) never sees half a file, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any, Callable

# ".tmp-<pid>-<8 hex>-<final name>": what atomic_write leaves behind only when its process is killed.
_TEMP_NAME = re.compile(r"^\.tmp-\d+-[0-9a-f]{8}-.+$")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Call write(tmp_path) on a temporary name beside `path`, then rename it over `path`.

    `suffix` keeps an extension some writers insist on (e.g. Keras's ".weights.h5").
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # pid + random part: threads and processes writing beside each other never share a temp name.
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{os.path.basename(path)}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_temp_name(name: str) -> bool:
    """True for a temporary file of atomic_write (a killed writer's leftover), never for a user's file."""
    return bool(_TEMP_NAME.match(name))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value: Any, indent: int = 2) -> None:
    """Sorted, indented JSON (the same object gives the same bytes), written atomically."""
    write_text(path, json.dumps(value, indent=indent, sort_keys=True) + "\n")
