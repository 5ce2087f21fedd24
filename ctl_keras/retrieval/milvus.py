"""The Milvus backend (`recommend index --backend=milvus`, extra `[milvus]`): the catalog in a vector database.

Embedded default: Milvus Lite, a local database directory beside the index (in-process, no server to
run; one process holds a database at a time: milvus_store.py). `--milvus_uri=http://host:19530` (token
from --milvus_token or $MILVUS_TOKEN, never written to the json) puts the collections on a Milvus
server or cluster, which is how a 10M-100M catalog is served across machines.

One collection per index generation, never changed once an index json names it: product_id (VARCHAR
primary key), category (INT64, a partition key: a query filters `category == c`), embedding
(FLOAT_VECTOR, inner-product metric), indexed FLAT, IVF_FLAT or HNSW. A build, and an update's first
change (`--update` / `--remove`), write a new collection `<base>_g<N>_<host>_<pid>` (on Lite in a
database of its own) holding the whole next generation; the index json, renamed last, names it. So
a reader (the look service, `recommend look`) searches exactly the generation it loaded while a
writer works, and a writer killed at any point leaves the served generation as it was. An update
therefore costs a full insert and index build of the catalog. After the json rename, this index's
other collections (Lite: databases) are dropped, older generations and killed writers' leftovers
(milvus_store.py), except the replaced one: it stays for readers that have not reloaded yet, until
the next build or update. Every answer is re-ordered by (score desc, catalog row asc) like the
exact backends.
"""

from __future__ import annotations

import os

import numpy as np

from ctl_keras.retrieval import milvus_store
from ctl_keras.retrieval.backend import IncompleteBackend
from ctl_keras.retrieval.exact import PerCategory, stable_order

INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW")
BATCH = 2000  # rows per insert/delete request


class Milvus(PerCategory):
    name, exact = "milvus", False

    def __init__(self, index, *, uri: str, collection: str, index_type: str, params: dict, stem: str,
                 token: str = ""):
        super().__init__(index)
        self.uri, self.collection, self.index_type, self.params, self.stem = uri, collection, index_type, params, stem
        self.token, self._client = token, None
        self.fresh = False  # the collection is this process's and no index json names it yet: changed in place

    @property
    def client(self):
        """Connected on first use: an update never opens the generation it replaces (a Lite database
        the look service may be holding)."""
        if self._client is None:
            self._client = milvus_store.connect(self.uri, self.token)
        return self._client

    base_name = staticmethod(milvus_store.base_name)

    @classmethod
    def build(cls, index, *, stem: str, uri: str | None = None, token: str = "", index_type: str = "HNSW",
              m: int = 32, ef_construction: int = 200, ef_search: int = 128, nlist: int = 0, nprobe: int = 0, **_):
        if index_type not in INDEX_TYPES:
            raise ValueError(f"--milvus_index={index_type}: expected one of {', '.join(INDEX_TYPES)}")
        nlist = nlist or max(16, int(4 * np.sqrt(max(len(index), 1))))
        build_params = {"HNSW": {"M": m, "efConstruction": ef_construction}, "IVF_FLAT": {"nlist": nlist},
                        "FLAT": {}}[index_type]
        search_params = {"HNSW": {"ef": ef_search}, "IVF_FLAT": {"nprobe": nprobe or max(8, nlist // 16)},
                         "FLAT": {}}[index_type]
        backend = cls(index, uri=uri or milvus_store.default_base(stem), collection="", index_type=index_type,
                      stem=stem, token=token, params={"build": build_params, "search": search_params})
        backend._create(int(index.meta.get("generation", 1)))
        return backend

    def _create(self, generation: int) -> None:
        """A new collection (on Lite in a new database) holding self.index; it becomes this backend's."""
        from pymilvus import DataType, MilvusClient

        self.close()
        self.uri, self.collection = milvus_store.new_location(self.uri, self.stem, generation,
                                                              lambda name: self.client.has_collection(name))
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("product_id", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("category", DataType.INT64, is_partition_key=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.index.embedding_dim)
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name="embedding", index_type=self.index_type, metric_type="IP",
                               params=self.params["build"])
        self.client.create_collection(self.collection, schema=schema, index_params=index_params)
        self.fresh = True
        self._write(self.index.product_ids, self.index.embeddings, self.index.category_ids, self.client.insert)
        self.client.flush(self.collection)
        self.verify()

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
        """The marker of an update that changed a published collection in place (earlier versions did)."""
        return os.path.abspath(self.stem) + ".milvus-pending"

    def _next(self) -> None:
        """The first change to a published collection: the changed catalog goes into a new one instead."""
        self._create(int(self.index.meta.get("generation", 1)) + 1)

    def add(self, ids, embeddings, categories) -> None:
        """Upsert. In a collection of this process's as delete + insert: Milvus 2.3.5's server routes an
        upserted row past its partition key, so a `category == c` search never finds it
        (tests/retrieval/test_milvus_server.py); an insert is routed right."""
        super().add(ids, embeddings, categories)
        if not self.fresh:
            return self._next()
        ids = np.asarray(ids).astype(str)
        self._send(lambda batch: self.client.delete(self.collection, ids=batch), ids.tolist())
        self._write(ids, np.asarray(embeddings, np.float32).reshape(len(ids), -1), np.asarray(categories), self.client.insert)

    def remove(self, ids) -> None:
        ids, before = [str(p) for p in ids], len(self.index)
        super().remove(ids)
        if len(self.index) == before:
            return
        if not self.fresh:
            return self._next()
        self._send(lambda batch: self.client.delete(self.collection, ids=batch), ids)

    def count(self) -> int:
        """Rows in the collection, with Strong consistency: on a server this waits until every write made
        so far is searchable (~0.2-0.4 s), so save() uses it before the index json names this state."""
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def verify(self) -> None:
        """The collection is there, loaded for search, and holds exactly the index's products."""
        from pymilvus.exceptions import MilvusException

        try:
            if not self.client.has_collection(self.collection):
                raise IncompleteBackend(f"collection {self.collection} not found at {self.uri}")
            self.client.load_collection(self.collection)
            n = self.count()
        except MilvusException as err:
            raise IncompleteBackend(f"collection {self.collection} at {self.uri} does not answer "
                                    f"({' '.join(str(err.message).split())[:200]})") from None
        if n != len(self.index):
            raise IncompleteBackend(f"collection {self.collection} holds {n} products, the index {len(self.index)}")

    def save(self, prefix: str) -> dict:
        if self.fresh:  # else nothing was written: the json keeps naming the published collection
            self.client.flush(self.collection)
            n = self.count()
            if n != len(self.index):
                raise RuntimeError(f"collection {self.collection} holds {n} products after the writes, "
                                   f"the index {len(self.index)}; rerun the same `recommend index` command")
        directory = os.path.dirname(os.path.abspath(prefix))
        uri = os.path.relpath(self.uri, directory) if milvus_store.is_lite(self.uri) and \
            os.path.dirname(os.path.abspath(self.uri)) == directory else self.uri
        return {"backend": self.name, "uri": uri, "collection": self.collection, "index_type": self.index_type,
                "params": self.params, "metric": "IP"}

    def commit(self, previous_meta) -> None:
        """The json names this collection now: drop the ones neither it nor the replaced json names."""
        keep, keep_dbs = {self.collection}, {os.path.abspath(self.uri)}
        if previous_meta and previous_meta.get("backend") == self.name:
            keep.add(previous_meta.get("collection"))
            directory = os.path.dirname(os.path.abspath(self.stem))
            keep_dbs.add(os.path.abspath(os.path.join(directory, str(previous_meta.get("uri")))))
        if os.path.exists(self._pending()):
            os.remove(self._pending())
        self.fresh = False
        lite = milvus_store.is_lite(self.uri)
        milvus_store.remove_unused({milvus_store.default_base(self.stem)} | ({milvus_store.base_of(self.uri)} if lite else set()),
                                   keep_dbs)
        if not lite:
            milvus_store.drop_unused(self.client, self.stem, keep, milvus_store.generation_of(self.collection))

    def files(self, meta):
        return []

    @classmethod
    def load(cls, index, meta: dict, directory: str, verify: bool = True):
        """verify=False (an update): nothing is opened; the update writes the next generation's collection."""
        uri = meta["uri"] if not milvus_store.is_lite(meta["uri"]) else os.path.join(directory, meta["uri"])
        stem = os.path.join(directory, os.path.basename(index.path)[: -len(".json")])
        backend = cls(index, uri=uri, collection=meta["collection"], index_type=meta["index_type"],
                      params=meta["params"], stem=stem)
        if verify:
            if os.path.exists(backend._pending()):
                raise IncompleteBackend(f"an update was interrupted ({backend._pending()}); rerun the same "
                                        "`recommend index --update` to finish it")
            if milvus_store.is_lite(uri):
                milvus_store.check_files(uri, backend.collection)
            try:
                backend.verify()
            except BaseException:
                backend.close()  # a Lite database stays held by this process until closed
                raise
        return backend

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            if milvus_store.is_lite(self.uri):
                milvus_store.release(self.uri)


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
