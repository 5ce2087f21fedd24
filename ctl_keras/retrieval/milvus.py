"""The Milvus backend (`recommend index --backend=milvus`, extra `[milvus]`): the catalog in a vector database.

Embedded default: Milvus Lite, a local `<stem>.milvus.db` directory beside the index (in-process, no
server to run; one process at a time holds it). `--milvus_uri=http://host:19530` (token from
--milvus_token or $MILVUS_TOKEN, never written to the json) puts the same collections on a Milvus
cluster, which is how a 10M-100M catalog is served across machines.

One collection per index generation: product_id (VARCHAR primary key), category (INT64, a partition
key: a query filters `category == c`), embedding (FLOAT_VECTOR, inner-product metric), indexed FLAT,
IVF_FLAT or HNSW. A fresh build writes a new collection `<base>_g<gen>_<host>_<pid>` and the index json
(renamed last) names it; the collection it replaces is dropped only after that rename, so a killed
build leaves the previous collection intact and in use; the next build on the same host drops such
orphans (their process gone). `--update` / `--remove` upsert and delete by product id in the live collection; a
`<stem>.milvus-pending` marker is written before the first change and removed after the json rename,
so a reader refuses a half-applied update and rerunning the update (idempotent upserts/deletes)
completes it. Every answer is re-ordered by (score desc, catalog row asc) like the exact backends.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np

from ctl_keras.atomic import atomic_write
from ctl_keras.retrieval.backend import IncompleteBackend, pid_alive
from ctl_keras.retrieval.exact import PerCategory, stable_order

INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW")
BATCH = 2000  # rows per insert/upsert request


def _client(uri: str, token: str = ""):
    if _is_lite(uri):
        # Milvus Lite's in-process gRPC server does not implement AllocTimestamp, which pymilvus asks for
        # while waiting on an index build (and then goes on without it); grpc logs that as an ERROR with
        # a traceback. It is not ours to report: keep the server's logger for real failures only.
        import logging

        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    try:
        from pymilvus import MilvusClient
    except ImportError as e:
        raise RuntimeError("the milvus backend needs pymilvus and milvus-lite: pip install 'ctl_keras[milvus]'") from e
    return MilvusClient(uri, token=token or os.environ.get("MILVUS_TOKEN", ""))


def _host() -> str:
    """A short tag of this machine: on a shared cluster, only this host's dead builds are its orphans."""
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _is_lite(uri: str) -> bool:
    return "://" not in uri


class Milvus(PerCategory):
    name, exact = "milvus", False

    def __init__(self, index, *, uri: str, collection: str, index_type: str, params: dict, stem: str,
                 token: str = "", client=None):
        super().__init__(index)
        self.uri, self.collection, self.index_type, self.params, self.stem = uri, collection, index_type, params, stem
        self.client = client or _client(uri, token)
        self.changed = False

    @staticmethod
    def base_name(stem: str) -> str:
        return "ctl_" + hashlib.sha1(os.path.abspath(stem).encode()).hexdigest()[:12]

    @classmethod
    def build(cls, index, *, stem: str, uri: str | None = None, token: str = "", index_type: str = "HNSW",
              m: int = 32, ef_construction: int = 200, ef_search: int = 128, nlist: int = 0, nprobe: int = 0, **_):
        from pymilvus import DataType, MilvusClient

        if index_type not in INDEX_TYPES:
            raise ValueError(f"--milvus_index={index_type}: expected one of {', '.join(INDEX_TYPES)}")
        uri = uri or os.path.abspath(stem) + ".milvus.db"
        client = _client(uri, token)
        base = cls.base_name(stem)
        cls._drop_orphans(client, base, stem)
        name = f"{base}_g{int(index.meta.get('generation', 1))}_{_host()}_{os.getpid()}"
        if client.has_collection(name):
            client.drop_collection(name)
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("product_id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("category", DataType.INT64, is_partition_key=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=index.embedding_dim)
        nlist = nlist or max(16, int(4 * np.sqrt(max(len(index), 1))))
        build_params = {"HNSW": {"M": m, "efConstruction": ef_construction}, "IVF_FLAT": {"nlist": nlist},
                        "FLAT": {}}[index_type]
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="embedding", index_type=index_type, metric_type="IP", params=build_params)
        client.create_collection(name, schema=schema, index_params=index_params)
        backend = cls(index, uri=uri, collection=name, index_type=index_type, stem=stem, client=client,
                      params={"build": build_params, "search": {"HNSW": {"ef": ef_search},
                                                                "IVF_FLAT": {"nprobe": nprobe or max(8, nlist // 16)},
                                                                "FLAT": {}}[index_type]})
        backend._write(index.product_ids, index.embeddings, index.category_ids, client.insert)
        client.flush(name)
        client.load_collection(name)
        backend.verify()
        return backend

    @classmethod
    def _drop_orphans(cls, client, base: str, stem: str) -> None:
        """Collections of this stem left by a killed build (their process gone, not named by the json)."""
        current = None
        try:
            with open(os.path.abspath(stem) + ".json") as f:
                current = json.load(f).get("search", {}).get("collection")
        except (OSError, ValueError):
            pass
        for name in client.list_collections():
            match = re.fullmatch(re.escape(base) + r"_g\d+_" + _host() + r"_(\d+)", name)
            if match and name != current and not pid_alive(int(match.group(1))):
                client.drop_collection(name)

    def _write(self, ids, embeddings, categories, call) -> None:
        rows = [{"product_id": str(p), "category": int(c), "embedding": e.tolist()}
                for p, c, e in zip(ids, categories, embeddings)]
        self._send(lambda batch: call(self.collection, batch), rows)

    def _send(self, call, items) -> None:
        """One request per BATCH items (a 1M-row insert in one message would exceed gRPC's limit)."""
        for s in range(0, len(items), BATCH):
            call(items[s:s + BATCH])

    def _engine(self, c, matrix):
        return _MilvusCategory(self, c)

    def _pending(self) -> str:
        return os.path.abspath(self.stem) + ".milvus-pending"

    def _mark(self) -> None:
        if not self.changed:
            atomic_write(self._pending(), lambda tmp: open(tmp, "w").write(json.dumps({"collection": self.collection})))
            self.changed = True

    def add(self, ids, embeddings, categories) -> None:
        """Upsert as delete + insert: Milvus 2.3.5's server routes an upserted row past its partition key, so
        a `category == c` search never finds it (tests/retrieval/test_milvus_server.py); an insert is routed
        right. The pending marker covers the gap between the two, and a rerun repeats both."""
        self._mark()
        ids = np.asarray(ids).astype(str)
        self._send(lambda batch: self.client.delete(self.collection, ids=batch), ids.tolist())
        self._write(ids, np.asarray(embeddings, np.float32).reshape(len(ids), -1), np.asarray(categories), self.client.insert)
        super().add(ids, embeddings, categories)

    def remove(self, ids) -> None:
        ids = [str(p) for p in ids]
        if ids:
            self._mark()
            self._send(lambda batch: self.client.delete(self.collection, ids=batch), ids)
        super().remove(ids)

    def count(self) -> int:
        """Rows in the collection, with Strong consistency: on a server this waits until every write made
        so far is searchable (~0.2-0.4 s), so save() uses it before the index json names this state."""
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def verify(self) -> None:
        if os.path.exists(self._pending()):
            raise IncompleteBackend(f"an update was interrupted ({self._pending()}); rerun the same "
                                    "`recommend index --update` to finish it")
        if not self.client.has_collection(self.collection):
            raise IncompleteBackend(f"collection {self.collection} not found at {self.uri}")
        n = self.count()
        if n != len(self.index):
            raise IncompleteBackend(f"collection {self.collection} holds {n} products, the index {len(self.index)}")

    def save(self, prefix: str) -> dict:
        self.client.flush(self.collection)
        n = self.count()
        if n != len(self.index):
            raise RuntimeError(f"collection {self.collection} holds {n} products after the writes, "
                               f"the index {len(self.index)}; rerun the same `recommend index` command")
        directory = os.path.dirname(os.path.abspath(prefix))
        uri = os.path.relpath(self.uri, directory) if _is_lite(self.uri) and \
            os.path.dirname(os.path.abspath(self.uri)) == directory else self.uri
        return {"backend": self.name, "uri": uri, "collection": self.collection, "index_type": self.index_type,
                "params": self.params, "metric": "IP"}

    def commit(self, previous_meta) -> None:
        if previous_meta and previous_meta.get("backend") == self.name and \
                previous_meta.get("collection") not in (None, self.collection) and \
                self.client.has_collection(previous_meta["collection"]):
            self.client.drop_collection(previous_meta["collection"])
        if os.path.exists(self._pending()):
            os.remove(self._pending())
        self.changed = False

    def files(self, meta):
        return []

    @classmethod
    def load(cls, index, meta: dict, directory: str, verify: bool = True):
        uri = meta["uri"] if not _is_lite(meta["uri"]) else os.path.join(directory, meta["uri"])
        if _is_lite(uri) and not os.path.isdir(uri):
            raise IncompleteBackend(f"Milvus Lite database {uri} is missing")
        stem = os.path.join(directory, os.path.basename(index.path)[: -len(".json")])
        backend = cls(index, uri=uri, collection=meta["collection"], index_type=meta["index_type"],
                      params=meta["params"], stem=stem)
        if verify:
            try:
                backend.verify()
                backend.client.load_collection(backend.collection)
            except BaseException:
                backend.close()  # a Lite database stays locked by this process until closed
                raise
        return backend

    def close(self) -> None:
        self.client.close()
        if _is_lite(self.uri):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)


class _MilvusCategory:
    """The engine of one category. Its product id -> row-within-category map is built once: add/remove
    drop the engines of the categories they change, and an unchanged category keeps its products in order."""

    def __init__(self, backend: Milvus, c: int):
        self.backend, self.c = backend, c
        self._local_of: dict[str, int] | None = None

    def search(self, queries, k):
        b = self.backend
        if self._local_of is None:
            rows = b.category(self.c)[0]
            self._local_of = {p: i for i, p in enumerate(b.index.product_ids[rows].tolist())}
        local_of = self._local_of
        # Session consistency: this process reads its own writes; another process's finished update was
        # made searchable (count() in save) before its index json appeared. Strong would cost ~0.2 s a query.
        hits = b.client.search(b.collection, data=queries.tolist(), limit=k, filter=f"category == {self.c}",
                               output_fields=[], search_params={"metric_type": "IP", "params": b.params["search"]},
                               consistency_level="Session")
        scores = np.full((len(queries), k), -np.inf, np.float32)
        local = np.full((len(queries), k), np.iinfo(np.int64).max, np.int64)
        for q, found in enumerate(hits):
            for j, hit in enumerate(found[:k]):
                pk = hit.get("id", hit.get("product_id"))  # a server names the key "id", Milvus Lite by its field
                scores[q, j], local[q, j] = hit["distance"], local_of.get(str(pk), -1)
        if np.any(local == -1):
            raise ValueError(f"collection {b.collection} returned products the index does not hold; rebuild the index")
        scores, local = stable_order(scores, local)
        local[~np.isfinite(scores)] = -1
        return scores, local


CLASSES = {"milvus": Milvus}
