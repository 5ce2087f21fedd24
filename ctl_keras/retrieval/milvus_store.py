"""Where each generation of the milvus backend lives and how it is opened: collection and Milvus Lite
database names, the connection (one line when it cannot open), who holds a Lite database, the
on-disk check of one, and the cleanup of superseded generations.

Names: a generation's collection is `<base>_<tag>`, base `ctl_<hash of the index stem>`, tag
`g<N>_<host>_<pid>` (the generation and its writer; `_2`... if this process writes one twice). A
Milvus Lite database (milvus-lite 3) is a directory `NAME.db` that one process holds at a time (an
flock on its LOCK file, kept until that process closes it or exits). So each generation on Lite gets
a database of its own beside the index, `<stem>.milvus.<tag>.db`: `recommend index --update` writes
the next generation's database while a running look service holds the current one, and the service
opens the new one when it loads that generation. What one process cannot do is open a database
another process holds (`recommend look` while the service serves that generation): refused in one
line naming the holder's pid. Every load first checks the database's files on disk (each data file
its collection's manifest lists is there and a readable parquet file): the process that already
holds a database answers from memory, so only the disk tells whether the next start will work.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import threading

from ctl_keras.retrieval.backend import IncompleteBackend
from ctl_keras.utils.process import pid_alive

TAG = r"g\d+_[0-9a-f]{6}_(\d+)(?:_\d+)?"
_held: dict[str, int] = {}  # database path -> backends of this process that have it open
_lock = threading.Lock()


# Loggers that print a traceback for what this module reports in one line (a missing or damaged
# collection, a Lite database another process holds). Milvus Lite's in-process gRPC server also logs
# an ERROR for AllocTimestamp, which pymilvus asks for while waiting on an index build and then goes
# on without.
_NOISY = ("grpc._server", "pymilvus.decorators", "milvus_lite.server_manager", "milvus_lite.adapter.grpc.servicer")


def connect(uri: str, token: str = ""):
    """A MilvusClient; ValueError (one line) when it cannot open, or another process holds a Lite database."""
    import logging

    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as e:
        raise RuntimeError("the milvus backend needs pymilvus and milvus-lite: pip install 'ctl_keras[milvus]'") from e
    if is_lite(uri):
        check_free(uri)
    try:
        client = MilvusClient(uri, token=token or os.environ.get("MILVUS_TOKEN", ""))
    except MilvusException as err:
        raise ValueError(f"cannot open Milvus at {uri}: {err.message}") from None
    if is_lite(uri):
        acquire(uri)
    return client


def is_lite(uri: str) -> bool:
    return "://" not in uri


def host() -> str:
    """A short tag of this machine: on a shared cluster, only this host's dead writers' collections are its leftovers."""
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def base_name(stem: str) -> str:
    return "ctl_" + hashlib.sha1(os.path.abspath(stem).encode()).hexdigest()[:12]


def generation_of(collection: str) -> int:
    """The generation a collection's name says (0 for a name of no generation)."""
    match = re.search(r"_g(\d+)_[0-9a-f]{6}_\d+(?:_\d+)?$", collection)
    return int(match.group(1)) if match else 0


def new_location(uri: str, stem: str, generation: int, has_collection) -> tuple[str, str]:
    """(uri, collection) of a new generation: on a server the same uri; on Lite a new database beside
    the one `uri` names. Never a name that exists: this process may write one generation twice."""
    lite = is_lite(uri)
    base_uri = base_of(uri) if lite else uri
    for n in itertools.count(1):
        tag = f"g{generation}_{host()}_{os.getpid()}" + (f"_{n}" if n > 1 else "")
        uri, collection = (generation_path(base_uri, tag) if lite else base_uri), f"{base_name(stem)}_{tag}"
        if not (os.path.exists(uri) if lite else has_collection(collection)):
            return uri, collection


def drop_unused(client, stem: str, keep: set[str], generation: int) -> None:
    """Drop this index's collections on a server other than `keep`: those of generations before
    `generation` (superseded), and the others whose writer on this host is gone or is this process
    (a killed writer's). A live writer's of this generation or later is left alone."""
    ours = re.escape(base_name(stem)) + r"_g(\d+)_" + host() + r"_(\d+)(?:_\d+)?"
    for name in client.list_collections():
        match = re.fullmatch(ours, name)
        if match and name not in keep and (int(match.group(1)) < generation or int(match.group(2)) == os.getpid()
                                           or not pid_alive(int(match.group(2)))):
            client.drop_collection(name)


def default_base(stem: str) -> str:
    return os.path.abspath(stem) + ".milvus.db"


def generation_path(base: str, tag: str) -> str:
    """The database of one generation: `x.db` -> `x.<tag>.db` (pymilvus takes a `.db` path for Lite)."""
    return base[: -len(".db")] + f".{tag}.db" if base.endswith(".db") else f"{base}.{tag}.db"


def base_of(path: str) -> str:
    """The inverse of generation_path; a database of no generation (an older index's) is its own base."""
    match = re.fullmatch(r"(.*)\." + TAG + r"\.db", path)
    return match.group(1) + ".db" if match else path


def holder(path: str) -> int | str | None:
    """None if no other process holds the database at `path`, else its pid ("?" if not found)."""
    with _lock:
        if _held.get(os.path.abspath(path)):
            return None  # this process: another backend of it shares the in-process server
    lock_file = os.path.join(path, "LOCK")
    try:
        inode = os.stat(lock_file).st_ino
    except OSError:
        return None
    try:
        with open("/proc/locks") as f:
            for line in f:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return int(fields[4])
        return None
    except OSError:
        return _probe(lock_file)


def _probe(lock_file: str) -> str | None:
    import fcntl

    fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return "?"
    finally:
        os.close(fd)


def check_free(path: str) -> None:
    """ValueError (one line) when another process holds the database."""
    pid = holder(path)
    if pid is not None:
        raise ValueError(f"Milvus Lite database {path} is open in another process (pid {pid}); Milvus Lite "
                         "serves one process at a time: ask that process (e.g. the look service), search "
                         "this index exactly with --backend=faiss, or put it on a Milvus server "
                         "(`recommend index --backend=milvus --milvus_uri=http://HOST:19530`)")


def acquire(path: str) -> None:
    with _lock:
        _held[os.path.abspath(path)] = _held.get(os.path.abspath(path), 0) + 1


def release(path: str) -> None:
    """One backend of this process closed the database; the last one stops its in-process server."""
    path = os.path.abspath(path)
    with _lock:
        _held[path] = _held.get(path, 1) - 1
        last = _held[path] <= 0
        if last:
            del _held[path]
    if last:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


def check_files(path: str, collection: str) -> None:
    """IncompleteBackend naming the first missing or unreadable file of `collection` in the database."""
    from pyarrow import ArrowException
    from pyarrow.parquet import read_metadata

    if not os.path.isdir(path):
        raise IncompleteBackend(f"Milvus Lite database {path} is missing")
    root = os.path.join(path, "collections", collection)
    try:
        with open(os.path.join(root, "manifest.json")) as f:
            partitions = json.load(f)["partitions"]
        files = [os.path.join(root, "partitions", part, name) for part, lists in partitions.items()
                 for key in ("data_files", "delta_files") for name in lists.get(key, ())]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise IncompleteBackend(f"collection {collection} in Milvus Lite database {path} is missing or "
                                f"damaged (its manifest: {' '.join(str(err).split())[:200]})") from None
    for file in files:
        try:
            read_metadata(file)
        except (OSError, ArrowException) as err:
            raise IncompleteBackend(f"Milvus Lite database {path} is damaged: {file} is not readable "
                                    f"({' '.join(str(err).split())[:200]})") from None


def generations(base: str) -> list[str]:
    """The databases of one base: the base itself (an older index's single database) and its generations'."""
    found = [base] if os.path.isdir(base) else []
    pattern = glob.escape(base[: -len(".db")] if base.endswith(".db") else base) + ".g*.db"
    return found + [p for p in glob.glob(pattern) if base_of(p) == base and os.path.isdir(p)]


def remove_unused(bases, keep: set[str]) -> list[str]:
    """Delete the databases of `bases` not in `keep` that no process holds: superseded generations
    and killed writers' leftovers (a writer holds its database from creating it until it has
    published it). Another machine's (a shared disk) are left alone. Returns them."""
    removed = []
    for base in set(bases):
        for path in generations(base):
            path = os.path.abspath(path)
            match = re.fullmatch(r".*\.g\d+_([0-9a-f]{6})_\d+(?:_\d+)?\.db", path)
            with _lock:
                mine = path in _held
            if path in keep or mine or (match and match.group(1) != host()) or not _ours(path) \
                    or holder(path) is not None:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _ours(path: str) -> bool:
    """A Lite database holding only collections this backend names (ctl_<hash>_...)."""
    try:
        names = os.listdir(os.path.join(path, "collections"))
    except OSError:
        return False
    return all(n.startswith("ctl_") for n in names)
