"""Rank a catalog for a scene: build a product index, then query it with the exported scene tower.

  python -m ctl_keras.recommend index --export_dir=export/demo --products=tf_records/synthetic \
      --index=export/demo/catalog
  python -m ctl_keras.recommend query --index=export/demo/catalog --scene=photo.jpg --category=shoes --k=10

`query` prints the top-K products by d* = 2 - q·f_p (ascending; exact per-category search, DESIGN §3);
with --json only a JSON list of {"product_id", "d_star"} goes to stdout.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

from ctl_keras import logs

FLAGS = flags.FLAGS
COMMANDS = ("index", "query")


def define_flags() -> None:
    """Defined on demand, not at import, so other modules can import run() without flag clashes."""
    flags.DEFINE_string("export_dir", None, "Export dir (scene_tower/, product_tower/). query: default, the index's.")
    flags.DEFINE_integer("version", None, "Tower version. index: default latest; query: default the index's.")
    flags.DEFINE_string("products", None, "index: image dir (<dir>/<category>/<id>.jpg) or tf_records/NAME[:split].")
    flags.DEFINE_string("index", None, "Index path stem (writes/reads STEM.npz + STEM.json).")
    flags.DEFINE_integer("batch_size", 32, "index: images per product-tower call.", lower_bound=1)
    flags.DEFINE_string("scene", None, "query: scene photo (JPEG or PNG).")
    flags.DEFINE_string("category", None, "query: category name of the products wanted.")
    flags.DEFINE_integer("k", 10, "query: how many products.", lower_bound=1)
    flags.DEFINE_bool("json", False, "query: print only a JSON list on stdout.")
    flags.DEFINE_enum("backend", "numpy", ["numpy", "tf", "faiss"], "query: exact search backend.")


def run_index(export_dir: str, products: str, index_path: str, *, version=None, batch_size=32) -> str:
    from ctl_keras.retrieval.catalog import build_index
    from ctl_keras.retrieval.index import save_index

    index = build_index(export_dir, products, version=version, batch_size=batch_size)
    logging.info("indexed %d products (skipped: %s)", len(index), index.meta["skipped"])
    return save_index(index, index_path)[0]


def run_query(index_path: str, scene: str, category: str, k: int = 10, *, export_dir=None, version=None,
              backend: str = "numpy") -> list[dict]:
    """[{"product_id", "d_star"}] sorted by d_star ascending; ValueError/FileNotFoundError on bad input."""
    from ctl_keras.retrieval.index import check_compatible, load_index

    index = load_index(index_path)
    index.category_id(category)  # unknown name -> one-line error before any TF work
    if not os.path.isfile(scene):
        raise FileNotFoundError(f"scene image {scene} does not exist")
    with open(scene, "rb") as f:
        image = f.read()
    if not image.startswith((b"\xff\xd8\xff", b"\x89PNG")):
        raise ValueError(f"scene {scene} is not a JPEG or PNG image")

    import tensorflow as tf

    from ctl_keras.retrieval.search import Searcher
    from ctl_keras.serving.exporter import SCENE, read_meta, resolve_version_dir

    export_dir = export_dir or index.meta.get("export_dir")
    if not export_dir:
        raise ValueError("the index does not record its export dir; pass --export_dir")
    version_dir = resolve_version_dir(export_dir, SCENE, index.meta.get("tower_version") if version is None else version)
    check_compatible(index, read_meta(version_dir))
    tower = tf.saved_model.load(version_dir).signatures["serving_default"]
    query = tower(image_bytes=tf.constant([image]), category=tf.constant([category]))["query"].numpy()
    ids, d_star = Searcher(index, backend).search(query, category, k)
    return [{"product_id": str(p), "d_star": float(d)} for p, d in zip(ids[0], d_star[0])]


def _require(command, *names):
    missing = [f"--{n}" for n in names if getattr(FLAGS, n) in (None, "")]
    if missing:
        raise app.UsageError(f"recommend {command} needs {', '.join(missing)}")


def main(argv):
    logs.quiet_library_info()
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m ctl_keras.recommend {{{'|'.join(COMMANDS)}}} --flags...")
    command = argv[1]
    try:
        if command == "index":
            _require(command, "export_dir", "products", "index")
            path = run_index(FLAGS.export_dir, FLAGS.products, FLAGS.index, version=FLAGS.version,
                             batch_size=FLAGS.batch_size)
            print(f"index: {os.path.abspath(path)}")
            return
        _require(command, "index", "scene", "category")
        results = run_query(FLAGS.index, FLAGS.scene, FLAGS.category, FLAGS.k, export_dir=FLAGS.export_dir,
                            version=FLAGS.version, backend=FLAGS.backend)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"recommend {command}: {err}", file=sys.stderr)
        sys.exit(1)
    if FLAGS.json:
        print(json.dumps(results))
        return
    print(f"top {len(results)} {FLAGS.category} for {FLAGS.scene} (d* = 2 - q·f_p, lower is better):")
    for rank, r in enumerate(results, 1):
        print(f"{rank:3d}  {r['product_id']}  {r['d_star']:.4f}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
