"""A retailer's own catalog end to end: a made-up shop (tests/shop_data.py) with a deep path taxonomy,
a CSV with pixel boxes and JPEG/PNG images of mixed sizes -> dry run -> build -> train -> evaluate ->
export -> index -> `recommend look --json`, with the shop's category names all the way through."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.helpers.shop_data import SPEC, make_shop

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
pytestmark = pytest.mark.slow


def _run(module, *args, timeout=900):
    done = subprocess.run([sys.executable, "-m", f"ctl_keras.{module}", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _dry_run_counts(stdout: str) -> dict:
    """category -> (rows, kept) from the dry-run table."""
    counts, table = {}, False
    for line in stdout.splitlines():
        if line.startswith("category "):
            table = True
        elif table and line.split() and not line.startswith(("total:", "not a category", "rows not read")):
            name, rows, kept = line.split()[:3]
            counts[name] = (int(rows), int(kept))
    return counts


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return make_shop(tmp_path_factory.mktemp("shop"))


def test_shop_end_to_end(shop, tmp_path):
    inputs = [f"--dataset={shop['spec']}", f"--pairs={shop['csv']}", f"--images_dir={shop['images_dir']}"]
    dry = _run("build_dataset", *inputs, "--dry_run")
    data_dir = tmp_path / "data"
    _run("build_dataset", *inputs, f"--out={data_dir}", "--workers=1", "--smoke")
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["categories"] == ["tops", "pants", "boots"]
    assert manifest["spec"]["name"] == "myshop" and manifest["config"]["dataset"] == "myshop"
    by_category = manifest["pairs_by_category"]
    assert _dry_run_counts(dry) == {c: (v["rows"], v["kept"]) for c, v in by_category.items()}
    assert manifest["pairs_dropped"]["dropped_category"] > 0 and manifest["pairs_dropped"]["unknown_category"] > 0
    assert all(v["kept"] > 0 for v in by_category.values())

    model_dir, export_dir = tmp_path / "model", tmp_path / "export"
    # No --dataset: the data's manifest names it; a contradicting --dataset is one line.
    wrong = subprocess.run([sys.executable, "-m", "ctl_keras.train", "--dataset=home", f"--data_dir={data_dir}"],
                           capture_output=True, text=True, env=ENV, timeout=120)
    assert wrong.returncode == 1 and "does not match the name that" in wrong.stderr.splitlines()[-1]
    _run("train", f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--smoke", "--feature_cache", "--epochs=2")
    _run("evaluate", f"--model_dir={model_dir}")
    result = json.loads((model_dir / "eval.json").read_text())
    assert set(result["per_category"]) == {"tops", "pants", "boots"}
    _run("export", f"--model_dir={model_dir}", f"--export_dir={export_dir}")
    index = export_dir / "catalog"
    _run("recommend", "index", f"--export_dir={export_dir}", f"--products={data_dir}:test", f"--index={index}")
    png_scene = next(os.path.join(shop["images_dir"], n) for n in sorted(os.listdir(shop["images_dir"]))
                     if n.endswith(".png"))
    look = json.loads(_run("recommend", "look", f"--index={index}", f"--scene={png_scene}", "--k=2", "--json"))
    assert set(look) == {"tops", "pants", "boots"}
    assert all(len(v) == 2 for v in look.values())


def test_csv_jsonl_parquet_build_the_same_dataset(shop, tmp_path):
    """One set of pairs as CSV, JSON lines and Parquet: the same TFRecords and questions, byte for byte."""
    from ctl_keras.builder import build as build_dataset
    from ctl_keras.config import get_config

    rows = shop["rows"]
    jsonl = tmp_path / "shop.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "shop.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    outputs = {}
    for fmt, path in (("csv", shop["csv"]), ("jsonl", jsonl), ("parquet", parquet)):
        spec_path = tmp_path / f"{fmt}.json"
        spec_path.write_text(json.dumps({**SPEC, "pairs_format": fmt}))
        out = tmp_path / fmt
        build_dataset.build(get_config(str(spec_path), smoke=True), out, spec=str(spec_path), pairs=path,
                            images_dir=shop["images_dir"], workers=1, log=lambda line: None)
        outputs[fmt] = {n: (out / n).read_bytes() for n in sorted(os.listdir(out)) if n != "manifest.json"}
    assert outputs["csv"] and len(outputs["csv"]) > 5
    assert outputs["jsonl"] == outputs["csv"] and outputs["parquet"] == outputs["csv"]
