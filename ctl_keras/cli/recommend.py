"""Rank a catalog for a scene: build a product index, then query it with the exported scene tower.

  ctl recommend index --export_dir=export/demo --products=tf_records/synthetic \
      --index=export/demo/catalog [--backend=numpy|ivf|hnsw|ivf_sq8|ivf_pq|milvus] [Beam options: --runner=...]
  ctl recommend index --update --index=export/demo/catalog --products=NEW [--remove=ids.txt]
  ctl recommend query --index=export/demo/catalog --scene=photo.jpg --category=shoes --k=10
  ctl recommend look --index=export/demo/catalog --scene=photo.jpg --k=5 [--categories=a,b]

`index` embeds the catalog on Apache Beam (retrieval/beam_embed.py; flags this module does not define
go to Beam's PipelineOptions; no --runner = the in-process FnApiRunner). `--backend` picks the search
backend the index is built with and records it in the json (retrieval/backend.py: exact by default;
FAISS ivf / hnsw / ivf_sq8 / ivf_pq per category, or a Milvus collection).
`index --update` / `--remove` change an existing index, embedding only new or changed products
(retrieval/update.py). `query` prints the top-K products by d* = 2 - q·f_p (ascending; docs/design.md
§3), searched with the backend the index holds (or an exact one: --backend=numpy|tf|faiss); with
--json only a JSON list of {"product_id", "d_star"} goes to stdout.
`look` answers every category (or --categories) for one scene, running the scene tower's backbone
once (its complete_look signature); --json prints only {category: the list `query --json` prints}.
"""

from __future__ import annotations

import json
import os

from absl import flags

from ctl_keras import cli
from ctl_keras.cli import options
from ctl_keras.utils import atomic
from ctl_keras.retrieval.backend import FAISS_BACKENDS
from ctl_keras.retrieval.jobs import run_index, run_look, run_query

FLAGS = flags.FLAGS
COMMANDS = ("index", "query", "look")


def define_flags() -> None:
    """Defined on demand, not at import, so other modules can import run() without flag clashes."""
    options.define("export_dir", "version", "index", "batch_size", "categories", "k", "backend", defaults={
        "batch_size": 32}, help_texts={
        "export_dir": "Export dir (scene_tower/, product_tower/). query: default, the index's.",
        "version": "Tower version. index: default latest; query: default the index's.",
        "index": "Index path stem (writes/reads STEM.npz + STEM.json).",
        "batch_size": "index: images per product-tower call.",
        "categories": "look: comma-separated category names (default: every category).",
        "k": "query/look: how many products (per category).",
        "backend": "index: the search backend to build and record (default numpy: exact). query/look: default "
                   "the one the index holds; an exact one (numpy, tf, faiss) works on any index."})
    flags.DEFINE_string("products", None, "index: image dir (<dir>/<category>/<id>.jpg) or tf_records/NAME[:split].")
    flags.DEFINE_string("scene", None, "query/look: scene photo (JPEG or PNG).")
    flags.DEFINE_string("category", None, "query: category name of the products wanted.")
    flags.DEFINE_bool("json", False, "query: print only a JSON list on stdout; look: only a JSON object "
                      "{category: that list}.")
    flags.DEFINE_bool("update", False, "index: change the existing index STEM: embed only the --products not "
                      "in it (or whose image changed); writes the index's next generation.")
    flags.DEFINE_string("remove", None, "index: file of product ids (one a line) to drop from the existing index.")
    flags.DEFINE_integer("ann_min_size", 10_000, "index --backend=ivf|hnsw|ivf_sq8|ivf_pq: categories with fewer "
                         "products are searched exactly (recall 1.0).", lower_bound=1)
    flags.DEFINE_integer("hnsw_m", 32, "index --backend=hnsw|milvus: HNSW links per node (M).", lower_bound=2)
    flags.DEFINE_integer("hnsw_ef_construction", 200, "index --backend=hnsw|milvus: HNSW efConstruction.",
                         lower_bound=1)
    flags.DEFINE_integer("hnsw_ef_search", 128, "index --backend=hnsw|milvus: HNSW efSearch (recorded; "
                         "used by every query).", lower_bound=1)
    flags.DEFINE_integer("rerank", None, "index --backend=ivf_sq8|ivf_pq: short list of rerank*k re-ranked "
                         "exactly (default 4 for ivf_sq8, 32 for ivf_pq).", lower_bound=1)
    flags.DEFINE_integer("ivf_nlist", 0, "index --backend=ivf|ivf_sq8|ivf_pq: lists per category (0: ~4 sqrt(n); "
                         "1 with ivf_pq: a brute-force scan of the codes, for catalogs IVF partitions badly).",
                         lower_bound=0)
    flags.DEFINE_float("ivf_nprobe_fraction", None, "index --backend=ivf|ivf_sq8|ivf_pq: share of the lists "
                       "each query scans (default 1/64; 1/16 for ivf_pq), at least 8.", lower_bound=0, upper_bound=1)
    flags.DEFINE_string("milvus_uri", None, "index --backend=milvus: a Milvus server (http://host:19530); "
                        "default a Milvus Lite database STEM.milvus.db beside the index.")
    flags.DEFINE_string("milvus_token", None, "index --backend=milvus: the server's token (else $MILVUS_TOKEN); "
                        "never written to the index json.")
    flags.DEFINE_enum("milvus_index", "HNSW", ["FLAT", "IVF_FLAT", "HNSW"], "index --backend=milvus: index type.")


def backend_options(name: str, flag_values=FLAGS, stem: str | None = None) -> dict:
    """The build options of backend `name` from the flags."""
    if name in FAISS_BACKENDS:
        options = {"min_size": flag_values.ann_min_size}
        if name == "hnsw":
            options.update(m=flag_values.hnsw_m, ef_construction=flag_values.hnsw_ef_construction,
                           ef_search=flag_values.hnsw_ef_search)
        else:
            if flag_values.ivf_nlist:
                options["nlist"] = flag_values.ivf_nlist
            if flag_values.ivf_nprobe_fraction is not None:
                options["nprobe_fraction"] = flag_values.ivf_nprobe_fraction
        if name in ("ivf_sq8", "ivf_pq") and flag_values.rerank is not None:
            options["rerank"] = flag_values.rerank
        return options
    if name == "milvus":
        return {"stem": stem, "uri": flag_values.milvus_uri, "token": flag_values.milvus_token or "",
                "index_type": flag_values.milvus_index, "m": flag_values.hnsw_m,
                "ef_construction": flag_values.hnsw_ef_construction, "ef_search": flag_values.hnsw_ef_search}
    return {}


def _print_ranked(results: list[dict]) -> None:
    for rank, r in enumerate(results, 1):
        print(f"{rank:3d}  {r['product_id']}  {r['d_star']:.4f}")


def main(argv):
    if argv[1] == "index" and FLAGS.index:  # a full disk: one line naming where
        with atomic.full_disk_names(os.path.dirname(os.path.abspath(FLAGS.index)),
                                 "the catalog index (the previous one, if any, is unchanged)"):
            return _commands(argv)
    return _commands(argv)


def _commands(argv):
    command, extra = argv[1], argv[2:]
    if extra and (command != "index" or not all(a.startswith("--") for a in extra)):
        raise ValueError(f"unknown arguments {' '.join(extra)}")
    if command == "index" and (FLAGS.update or FLAGS.remove):
        from ctl_keras.retrieval.update import update_index

        cli.require("index")
        if FLAGS.products and not FLAGS.update:
            raise ValueError("--products with --remove adds products only with --update")
        if FLAGS.backend:
            raise ValueError("--update keeps the backend the index holds; --backend rebuilds: "
                             "run `recommend index` without --update")
        report = update_index(FLAGS.index, FLAGS.products, FLAGS.remove, batch_size=FLAGS.batch_size,
                              beam_args=extra, version=FLAGS.version, export_dir=FLAGS.export_dir)
        print(f"index: {os.path.abspath(FLAGS.index)} {report.line()}")
        return
    if command == "index":
        cli.require("export_dir", "products", "index")
        cli.check_output_file(FLAGS.index + ".json", "index")
        backend = FLAGS.backend or "numpy"
        path = run_index(FLAGS.export_dir, FLAGS.products, FLAGS.index, version=FLAGS.version,
                         batch_size=FLAGS.batch_size, beam_args=extra, backend=backend,
                         options=backend_options(backend, FLAGS, FLAGS.index))
        print(f"index: {os.path.abspath(path)}")
        return
    if command == "look":
        cli.require("index", "scene")
        looks = run_look(FLAGS.index, FLAGS.scene, FLAGS.k, FLAGS.categories, export_dir=FLAGS.export_dir,
                         version=FLAGS.version, backend=FLAGS.backend)
        if FLAGS.json:
            print(json.dumps(looks))
            return
        print(f"complete the look of {FLAGS.scene} (d* = 2 - q·f_p, lower is better):")
        for name, results in looks.items():
            print(f"{name}: top {len(results)}" + ("" if results else " (no product of this category in the index)"))
            _print_ranked(results)
        return
    cli.require("index", "scene", "category")
    results = run_query(FLAGS.index, FLAGS.scene, FLAGS.category, FLAGS.k, export_dir=FLAGS.export_dir,
                        version=FLAGS.version, backend=FLAGS.backend)
    if FLAGS.json:
        print(json.dumps(results))
        return
    print(f"top {len(results)} {FLAGS.category} for {FLAGS.scene} (d* = 2 - q·f_p, lower is better):")
    _print_ranked(results)


if __name__ == "__main__":
    cli.run(main, "recommend", define_flags=define_flags, commands=COMMANDS, pass_through=True)
