"""One writer at a time per catalog index, and what a writer cleans up or continues from the last one.

`recommend index` (a full build) and `recommend index --update/--remove` hold an exclusive lock on
STEM.lock for their whole run: two updates started together would otherwise both read generation N
and both write an N+1, the second silently dropping the first's products. The second writer refuses
at once, in one line naming the holder's pid, rather than waiting: a scheduled job then fails visibly
and reruns later, instead of piling up behind a long build. The lock is a flock, which the kernel
drops when its process dies (even by SIGKILL): a lock file left behind is taken over, never stale.
A writer that ends removes STEM.lock (only a killed one leaves it beside the index).

Holding the lock, a writer removes the temporary files that killed writers of the same stem left
(`.tmp-<pid>-<random>-STEM.g<N>.npz`, catalog-sized) when their pid is gone; nothing else.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
from typing import Iterator

from ctl_keras.utils.atomic import ExclusiveLock, temp_owner
from ctl_keras.utils.process import pid_alive
from ctl_keras.retrieval.index import index_paths, index_stem

LOCK_SUFFIX = ".lock"


def lock_path(path: str | os.PathLike) -> str:
    return index_stem(path) + LOCK_SUFFIX


@contextlib.contextmanager
def index_writer(path: str | os.PathLike) -> Iterator[None]:
    """Hold STEM.lock (RuntimeError naming the holder's pid if another process does), then remove
    dead writers' temporary files of this stem."""
    stem = index_stem(path)

    def busy(holder: str) -> RuntimeError:
        return RuntimeError(f"index {stem} is being written by another `recommend index` (pid {holder}, "
                            f"lock {stem}{LOCK_SUFFIX}); not waiting for it: rerun once it has finished")

    with ExclusiveLock(lock_path(path), busy, remove_on_exit=True):
        remove_dead_temps(path)
        yield


def remove_dead_temps(path: str | os.PathLike) -> list[str]:
    """Remove `.tmp-<pid>-...` files of this stem's index files whose writer pid is gone; returns them.
    A live pid's (a writer not holding the lock, or a recycled pid) and another stem's are kept."""
    stem = index_stem(path)
    directory, base = os.path.dirname(os.path.abspath(stem)), os.path.basename(stem)
    ours = re.compile(re.escape(base) + r"((\.g\d+)?(\.ann)?\.(npz|json)|\.milvus-pending)")
    removed = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        owner = temp_owner(name)
        file = os.path.join(directory, name)
        if owner is None or not ours.fullmatch(owner[1]) or owner[0] == os.getpid() or pid_alive(owner[0]):
            continue
        if os.path.isfile(file) and not os.path.islink(file):
            os.remove(file)
            removed.append(file)
    return removed


def next_generation(path: str | os.PathLike) -> int:
    """The generation a full rebuild writes: one past the highest the stem's json or data files show
    (1 for a new index). Reusing 1 for different content would hide the rebuild from a server that
    watches the index and from anyone reading `index_generation` in its answers."""
    npz_path, json_path = index_paths(path)
    stem = index_stem(path)
    seen = [0]
    try:
        with open(json_path) as f:
            seen.append(int(json.load(f).get("generation", 1)))
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    if os.path.exists(npz_path):
        seen.append(1)
    for file in glob.glob(glob.escape(stem) + ".g[0-9]*.npz"):
        match = re.fullmatch(r"\.g(\d+)(\.ann)?\.npz", file[len(stem):])
        if match:
            seen.append(int(match.group(1)))
    return max(seen) + 1
