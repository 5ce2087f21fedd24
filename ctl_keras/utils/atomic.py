"""Atomic file writes: write under a temporary name in the same directory, then `os.replace`.

A reader (or a later run) never sees half a file, and a failed write leaves nothing behind. Besides one
file (`atomic_write`), two shapes: several files published in a fixed order (`staged_files`: the last
rename is the switch a reader trusts) and a directory built beside its final name (`publish_dir`).
The modules that still rename by themselves: builder/ (object stores, through Beam's FileSystems) and
savedmodel/versions.py (numbered version directories); both call the fsync helpers below on local disks.
`ExclusiveLock` keeps a second writer of the same files out (a flock file that holds the owner's pid).

Durability: a rename is atomic but not durable. After a power loss or a VM crash, `os.replace` of a
file whose data never reached the disk can leave an empty or truncated file under the final name
(ext4 with delalloc, XFS), and a rename not yet in the directory's journal can be undone. So, as SQLite
and LevelDB do, every write here fsyncs the file before the rename and the directory after it
(`durable=True`, the default). Writers on a hot path (one small file per downloaded image) pass
`durable=False`: those files are checked on the next run anyway. Costs: BUILD_NOTES.md, "Durable writes".
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
import uuid
from typing import Any, Callable, Iterator

from ctl_keras.utils.process import pid_alive

# ".tmp-<pid>-<8 hex>-<final name>": what atomic_write leaves behind only when its process is killed.
_TEMP_NAME = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-(.+)$")


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a directory by name (the writer may have closed it already)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        fd = os.open(os.fspath(path), flags)
    except OSError:
        if os.name == "nt" and os.path.isdir(path):
            return  # Windows cannot open a directory; NTFS journals renames itself
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file and directory under `root` (a directory about to be renamed into place)."""
    for directory, _, names in os.walk(os.fspath(root)):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                fsync_path(path)
        fsync_path(directory)


def _parent(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "", *,
                 durable: bool = True) -> None:
    """Call write(tmp_path) on a temporary name beside `path`, then rename it over `path`.

    `suffix` keeps an extension some writers insist on (e.g. Keras's ".weights.h5"). `durable`: fsync
    the file before the rename and its directory after (module docstring).
    """
    path = os.fspath(path)
    tmp = _temp_name(path, suffix)
    try:
        write(tmp)
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(_parent(path))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _temp_name(path: str, suffix: str = "") -> str:
    """A fresh temporary name beside `path` (its directory is created)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # pid + random part: threads and processes writing beside each other never share a temp name.
    return os.path.join(directory, f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{os.path.basename(path)}{suffix}")


@contextlib.contextmanager
def staged_files(*paths: str | os.PathLike, durable: bool = True) -> Iterator[tuple[str, ...]]:
    """Yield a temporary name beside each of `paths`; write them all inside the block.

    On a clean exit each is renamed over its path in the order given, so the last one (e.g. the
    metadata that names and hashes the others) is the switch: a crash before it leaves the old switch
    file in place. On an exception nothing is renamed; temporaries left are removed either way.
    `durable`: every file is fsynced before the first rename, every directory after the last.
    """
    temps = tuple(_temp_name(os.fspath(p)) for p in paths)
    try:
        yield temps
        if durable:
            for tmp in temps:
                fsync_path(tmp)
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
        if durable:
            for directory in dict.fromkeys(_parent(os.fspath(p)) for p in paths):
                fsync_path(directory)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)


def publish_dir(built: str | os.PathLike, path: str | os.PathLike, *, durable: bool = True) -> None:
    """Rename the complete directory `built` to `path` (same parent), replacing a directory there.

    A directory cannot be renamed over a non-empty one, so an existing `path` is first renamed aside to
    `<path>.old-<pid>`, `built` takes its place and the old one is removed. A crash between the two
    renames leaves no `path` (a reader finds nothing, never a mix of old and new) and `<path>.old-<pid>`.
    """
    built, path = os.fspath(built), os.fspath(path)
    if durable:
        fsync_tree(built)
    if os.path.exists(path):
        old = f"{path}.old-{os.getpid()}"
        os.replace(path, old)
        os.replace(built, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(built, path)
    if durable:
        fsync_path(_parent(path))


def is_temp_name(name: str) -> bool:
    """True for a temporary file of atomic_write (a killed writer's leftover), never for a user's file."""
    return bool(_TEMP_NAME.match(name))


def temp_owner(name: str) -> tuple[int, str] | None:
    """(writer pid, final name) of a temporary name of atomic_write; None for any other name."""
    match = _TEMP_NAME.match(name)
    return (int(match.group(1)), match.group(2)) if match else None


class ExclusiveLock:
    """Non-blocking exclusive flock on `path`, which holds the owner's pid. The kernel drops the lock
    when its process dies (even by SIGKILL), so a lock file left by a dead process is simply taken
    over. When a live process holds it, `busy(holder pid as written, "?" if unreadable)` is raised.

    `remove_on_exit`: the holder removes the file before releasing it (a directory that must not keep
    a stray lock file, e.g. a dataset). Then a taker may have opened the file just before its removal
    and lock a file without a name, so taking checks the locked file is the one under `path`, else
    tries again."""

    def __init__(self, path: str | os.PathLike, busy: Callable[[str], Exception], *, remove_on_exit: bool = False):
        self.path, self.busy, self.remove_on_exit = os.fspath(path), busy, remove_on_exit
        self._fd: int | None = None

    def __enter__(self) -> "ExclusiveLock":
        while not self._take():
            pass
        return self

    def _take(self) -> bool:
        import fcntl  # POSIX only; imported here so the rest of this module works everywhere

        os.makedirs(_parent(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the directory was removed since makedirs (an emptied one): again
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            raise self.busy(holder) from None
        if self.remove_on_exit:
            try:
                named = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                named = False
            if not named:  # the previous holder removed it after we opened it
                os.close(fd)
                return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            import fcntl

            if self.remove_on_exit:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)  # while still holding it: see the class docstring
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder_pid(fd: int, wait_s: float = 1.0) -> str:
    """The pid written in a lock file held by another process, "?" if none appears within `wait_s`: the
    holder writes it just after taking the flock, so a taker that lost the race by microseconds finds
    the file still empty (or holding its dead predecessor's pid) and waits for it."""
    deadline = time.monotonic() + wait_s
    while True:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        # A dead process's pid may still be there: the new holder truncates it just after its flock.
        if holder.isdigit() and pid_alive(int(holder)) or time.monotonic() >= deadline:
            return holder or "?"
        time.sleep(0.005)


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write, durable=durable)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | os.PathLike, value: Any, indent: int = 2, *, durable: bool = True) -> None:
    """Sorted, indented JSON (the same object gives the same bytes), written atomically (and durably)."""
    write_text(path, json.dumps(value, indent=indent, sort_keys=True) + "\n", durable=durable)


_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(OSError):
    """A full disk (or quota) whose message names where: an outer full_disk_names keeps it as it is."""


@contextlib.contextmanager
def full_disk_names(path: str | os.PathLike, what: str = "the output") -> Iterator[None]:
    """A full disk (or quota) inside the block becomes one OSError line naming `path`: the error Beam
    re-raises from a worker carries no file name, only "[Errno 28] No space left on device". Blocks
    nest: the innermost, which knows the directory, names it."""
    try:
        yield
    except DiskFull:
        raise
    except (OSError, RuntimeError) as err:
        # Beam re-raises a worker's error as OSError("[Errno 28] ...") without errno, or (worker
        # processes) as RuntimeError holding the whole remote traceback.
        code = getattr(err, "errno", None)
        code = code if code in _FULL else next((c for c in _FULL if f"[Errno {c}]" in str(err)), None)
        if code is None:
            raise
        raise DiskFull(code, f"{os.strerror(code)} while writing {what} under {os.fspath(path)}; free "
                             "space there or choose another location") from None
