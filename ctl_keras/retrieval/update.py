"""`recommend index --update/--remove`: change a catalog index without re-embedding what it holds.

An update embeds (on Beam, beam_embed.build_index) only the products of --products whose id is new
or whose image bytes differ from the embedded one (sha256 per product, stored in the index), or
whose category folder differs from the one it is filed under (a move: re-embedded and re-filed,
counted `moved`); the rest are counted unchanged. A changed image replaces its row in place
(reported by id), new products are appended, --remove drops ids. Each product records the source
it was last read from (absolute path, index.py source_ids), so its image (a thumbnail) resolves
from any directory, whichever update brought it. Only one writer works on an index at a time
(index_lock.py): a second update started meanwhile refuses at once, naming the first one's pid. The product tower must be the one the index was embedded
with (same export, version and weights), else the update is refused: mixing embeddings of two towers
would rank nonsense. The result is the next index generation (index.py: new data files, the json
renamed last), so a reader of the previous generation is never broken. The search backend follows
through its add/remove (backend.py): a FAISS part is rebuilt for the categories that changed and kept
as is for the others; Milvus gets upserts and deletes by product id.
"""

from __future__ import annotations

import dataclasses
import os


from ctl_keras.retrieval.index import CatalogIndex, check_compatible, load_index, save_index
from ctl_keras.retrieval.index_lock import index_writer
from ctl_keras.retrieval.search import open_backend


@dataclasses.dataclass
class UpdateReport:
    generation: int
    added: list[str]
    reembedded: list[str]
    removed: list[str]
    unchanged: int
    not_found: list[str]  # --remove ids the index did not hold
    skipped: dict
    rebuilt_ann: list[str]
    moved: list[str] = dataclasses.field(default_factory=list)  # same image, another category folder

    def line(self) -> str:
        parts = [f"generation {self.generation}: +{len(self.added)} new", f"{len(self.reembedded)} re-embedded "
                 f"(image changed{': ' + ', '.join(self.reembedded[:10]) if self.reembedded else ''}"
                 f"{' ...' if len(self.reembedded) > 10 else ''})",
                 f"{len(self.moved)} moved (category changed{': ' + ', '.join(self.moved[:10]) if self.moved else ''}"
                 f"{' ...' if len(self.moved) > 10 else ''})", f"-{len(self.removed)} removed",
                 f"{self.unchanged} unchanged"]
        if self.not_found:
            parts.append(f"{len(self.not_found)} ids to remove not in the index ({', '.join(self.not_found[:10])})")
        if any(self.skipped.values()):
            parts.append(f"skipped {self.skipped}")
        if self.rebuilt_ann:
            parts.append(f"approximate index rebuilt for {', '.join(self.rebuilt_ann)}")
        return "; ".join(parts)


def read_ids(path: str) -> list[str]:
    """One product id per line (blank lines ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--remove file {path} does not exist")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def update_index(index_path: str, products: str | None = None, remove: str | None = None, *,
                 batch_size: int = 32, beam_args=(), version=None, export_dir=None) -> UpdateReport:
    """Apply --products (embed new/changed) then --remove to the index at index_path; save the next
    generation. The search backend the index holds follows through the contract's add/remove (faiss:
    the changed categories rebuilt; milvus: upserts and deletes by product id)."""
    if not products and not remove:
        raise ValueError("--update needs --products=NEW and/or --remove=ids.txt")
    with index_writer(index_path):  # the generation read below is the one this run replaces
        return _update(index_path, products, remove, batch_size, beam_args, version, export_dir)


def _update(index_path, products, remove, batch_size, beam_args, version, export_dir) -> UpdateReport:
    old = load_index(index_path)
    if products and old.image_sha256 is None:
        raise ValueError(f"{index_path} was built before `--update` existed (no image hashes to compare); "
                         "rebuild it once with `recommend index`")
    if version is not None and version != old.meta.get("tower_version"):
        raise ValueError(f"the index was embedded with tower version {old.meta.get('tower_version')}, not {version}; "
                         "an update cannot mix towers: rebuild the index with `recommend index`")
    recorded = old.meta.get("export_dir")
    if export_dir is not None and (not recorded or os.path.realpath(export_dir) != os.path.realpath(recorded)):
        raise ValueError(f"--export_dir={export_dir} is not the export the index was embedded with ({recorded}); "
                         "an update cannot mix towers: drop --export_dir, or rebuild the index with "
                         f"`recommend index --export_dir={export_dir}`")
    backend = open_backend(old, resume=True)
    sha_of = dict(zip(old.product_ids, old.image_sha256)) if old.image_sha256 is not None else {}
    sources, source_of = _sources(old)
    added, reembedded, moved, unchanged, skipped = [], [], [], 0, {}
    if products:
        delta = _embed(old, index_path, products, batch_size, beam_args)
        unchanged, skipped = len(delta.meta.get("unchanged", ())), delta.meta["skipped"]
        if delta.meta["source"] not in sources:
            sources.append(delta.meta["source"])
        new_source = sources.index(delta.meta["source"])
        for p, h in zip(delta.product_ids.tolist(), delta.image_sha256):
            (added if p not in sha_of else reembedded if sha_of[p] != h else moved).append(p)
            sha_of[p] = h
        for p in [*delta.product_ids.tolist(), *delta.meta.get("unchanged", ())]:
            source_of[p] = new_source  # the newest place the image was read from
        if len(delta):
            backend.add(delta.product_ids, delta.embeddings, delta.category_ids)
    drop = set(read_ids(remove)) if remove else set()
    removed = [p for p in backend.index.product_ids if p in drop]
    not_found = sorted(drop - set(removed))
    if removed:
        backend.remove(removed)
    meta = dict(old.meta, generation=int(old.meta.get("generation", 1)) + 1)
    b = backend.index
    # Sources no product comes from any more are dropped; -1: a product of no recorded source.
    used = sorted({source_of.get(p, -1) for p in b.product_ids} - {-1})
    renumber = {-1: -1, **{s: i for i, s in enumerate(used)}}
    meta["sources"] = [sources[s] for s in used]
    new = CatalogIndex(b.product_ids, b.category_ids, b.embeddings, old.categories, meta,
                       image_sha256=[sha_of.get(p, "") for p in b.product_ids],
                       source_ids=[renumber[source_of.get(p, -1)] for p in b.product_ids])
    save_index(new, index_path, search=backend)
    backend.close()
    return UpdateReport(meta["generation"], added, reembedded, removed, unchanged, not_found, skipped,
                        list(getattr(backend, "rebuilt", [])), moved=moved)


def _sources(old: CatalogIndex) -> tuple[list[str], dict[str, int]]:
    """(meta["sources"], {product_id: its index there}); an index built before per-product sources:
    every product from meta["source"] (as recorded, possibly relative), or none."""
    sources = list(old.meta.get("sources") or ([old.meta["source"]] if old.meta.get("source") else []))
    ids = old.source_ids.tolist() if old.source_ids is not None else [0 if sources else -1] * len(old)
    return sources, dict(zip(old.product_ids.tolist(), ids))


def _embed(old: CatalogIndex, index_path: str, products: str, batch_size: int, beam_args) -> CatalogIndex:
    """The new and changed products of `products`, embedded by the index's own product tower."""
    from ctl_keras.retrieval.beam_embed import build_index
    from ctl_keras.savedmodel.exporter import PRODUCT, read_meta, resolve_version_dir

    export_dir, version = old.meta.get("export_dir"), old.meta.get("tower_version")
    if not export_dir or version is None:
        raise ValueError(f"{index_path} does not record its export dir and tower version; rebuild it")
    check_compatible(old, read_meta(resolve_version_dir(export_dir, PRODUCT, version)), what="product tower")
    staging_parent = os.path.dirname(os.path.abspath(index_path))
    return build_index(export_dir, products, version=version, batch_size=batch_size, beam_args=beam_args,
                       staging_parent=staging_parent,
                       known={p: (h, old.categories[c]) for p, h, c in
                              zip(old.product_ids.tolist(), old.image_sha256.tolist(), old.category_ids.tolist())})
