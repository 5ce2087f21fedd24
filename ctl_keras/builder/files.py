"""Paths through Beam's filesystems, so `--out`, `--images_dir` and friends may be gs:// (or any
filesystem Beam has a plugin for) as well as local paths."""

from __future__ import annotations

import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from ctl_keras.utils import atomic

RAW = CompressionTypes.UNCOMPRESSED  # never guess a codec from a name (".tfrecord", ".jpg")


def is_url(path: str) -> bool:
    return "://" in path


def join(base: str, *names: str) -> str:
    return FileSystems.join(base, *names)


def parent(path: str) -> str:
    return FileSystems.split(path)[0]


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=RAW) as f:
        return f.read()


def write_atomic(path: str, write) -> None:
    """write(file) into a temporary name beside `path`, then rename: a reader (or a retried Beam
    bundle) never sees half a file."""
    directory, name = FileSystems.split(path)
    tmp = FileSystems.join(directory, f".tmp-{uuid.uuid4().hex}-{name}")
    try:
        with FileSystems.create(tmp, compression_type=RAW) as f:
            write(f)
        if not is_url(tmp):  # local disk: fsync before the rename, the directory after (atomic.py)
            atomic.fsync_path(tmp)
        rename(tmp, path)
        if not is_url(path):
            atomic.fsync_path(directory)
    finally:
        if FileSystems.exists(tmp):
            FileSystems.delete([tmp])


def write_bytes(path: str, data: bytes) -> None:
    write_atomic(path, lambda f: f.write(data))


def rename(source: str, destination: str) -> None:
    """Replace `destination` (os.rename on local disks; copy + delete on object stores)."""
    FileSystems.rename([source], [destination])


def delete(paths: list[str]) -> None:
    """Delete the paths that exist (files or whole directories)."""
    present = [p for p in paths if FileSystems.exists(p)]
    if present:
        FileSystems.delete(present)


def matching(pattern: str) -> list[str]:
    """Paths matching a glob (e.g. `<out>/.staging-*/KEEP`), sorted."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def makedirs(path: str) -> None:
    if not FileSystems.exists(path):
        FileSystems.mkdirs(path)
