"""experiments: a --smoke run with 2 methods writes table/PNG/JSON, "full" trains on full scenes but scores
on cropped ones, re-runs skip (stale full-scene scores rerun), bad names fail clearly."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ctl_keras import experiments

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory):
    _, data_dir = synthetic_data
    root = tmp_path_factory.mktemp("experiments")
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "ctl_keras.experiments", "--smoke", f"--data_dir={data_dir}", f"--out={out}",
         f"--feature_cache_root={root / 'caches'}", "--methods=hybrid,imagenet", "--scenes=cropped,full",
         "--num_views=3"],
        capture_output=True, text=True, env=ENV, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data_dir, root, out, proc.stdout


def test_smoke_run_writes_table_png_and_json(synthetic_data, run):
    config, _ = synthetic_data
    _, _, out, stdout = run
    table = (out / "table.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("| Method | AUC (trained on cropped) | AUC (trained on full) | Top-1 (trained on cropped)")
    assert "Every number is scored on the CTL-cropped test scenes" in table
    assert any(line.startswith("| Ours (hybrid) |") for line in lines)
    assert any(line.startswith("| ImageNet Features |") for line in lines)
    assert "ALL products of the asked category" in table
    # The protocol footnote states batch size, validation and views; --num_views reached the cache.
    assert f"with batch {config.batch_size}, validation AUC every {config.eval_every} epochs" in table
    assert "3 cached augmented views per train image" in table and "Siamese fine-tunes" not in table  # not run
    assert (out.parent / "caches" / f"{config.image_size}px_3views_none").is_dir()
    assert (out / "topk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "categories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| attention (ours) |" in (out / "attention" / "attention.md").read_text()
    assert (out / "figures" / "compatibility.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    for scene in ("cropped", "full"):
        for method in ("hybrid", "imagenet"):
            r = results["results"][scene][method]
            assert 0.0 <= r["auc"] <= 1.0 and len(r["topk"]) == config.topk_max
            assert (out / scene / method / "eval.json").exists()
            assert r["trained_on"] == scene and r["scored_on"] == "cropped"
    assert (out / "cropped" / "hybrid" / "model" / "best.weights.h5").exists()
    assert results["config"]["num_views"] == 3
    assert 1 <= results["results"]["cropped"]["hybrid"]["fit"]["best_epoch"] <= config.epochs
    assert "[4/4]" in stdout
    assert (out / "cropped" / "hybrid" / "model" / "eval_categories.png").exists()  # evaluate's, beside eval.json


def test_full_mode_trains_on_full_and_scores_on_cropped(run):
    """The training-free ImageNet baseline gets the same numbers in both modes (same cropped test
    scenes); our full-mode model was trained on full scenes and its results.json says so."""
    _, _, out, _ = run
    results = json.loads((out / "results.json").read_text())["results"]
    cropped, full = results["cropped"]["imagenet"], results["full"]["imagenet"]
    assert full["auc"] == cropped["auc"] and full["topk"] == cropped["topk"]
    trained = json.loads((out / "full" / "hybrid" / "model" / "results.json").read_text())
    assert trained["trained_on"] == "full" and trained["full_scene"] is True and trained["scored_on"] == "cropped"
    assert results["full"]["hybrid"]["auc"] == trained["test_auc"]


def test_rerun_skips_finished_methods(run):
    """Every eval.json exists, so an in-process re-run trains nothing and rewrites no eval.json."""
    data_dir, root, out, _ = run
    path = out / "cropped" / "hybrid" / "eval.json"
    before = path.stat().st_mtime_ns
    summary = experiments.run_experiments("synthetic", str(out), ["hybrid", "imagenet"], ["cropped", "full"],
                                          data_dir=data_dir, smoke=True, feature_cache_root=str(root / "caches"),
                                          num_views=3)
    assert path.stat().st_mtime_ns == before
    assert set(summary["results"]["full"]) == {"hybrid", "imagenet"}


def test_unknown_method_is_a_one_line_error(synthetic_data, tmp_path):
    _, data_dir = synthetic_data
    with pytest.raises(ValueError, match="unknown method 'nope'; valid names: random, popularity"):
        experiments.run_experiments("synthetic", str(tmp_path), ["hybrid", "nope"], ["cropped"], data_dir=data_dir)
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.experiments", f"--out={tmp_path}", "--methods=nope"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "experiments: error: unknown method 'nope'; valid names: " + ", ".join(experiments.all_methods())]
    with pytest.raises(ValueError, match="unknown scene mode 'zoom'"):
        experiments.check_methods(["hybrid"], ["zoom"])


def test_stale_full_scene_score_is_rerun(run, tmp_path):
    """An eval.json of another protocol (here: none, as before v2, e.g. the old meaning of "full") is
    not reused."""
    data_dir, root, out, _ = run
    copy = tmp_path / "out"
    shutil.copytree(out / "full" / "imagenet", copy / "full" / "imagenet")
    stale = copy / "full" / "imagenet" / "eval.json"
    old = json.loads(stale.read_text())
    assert old["protocol"] == experiments.PROTOCOL
    stale.write_text(json.dumps({k: v for k, v in old.items() if k not in ("scored_on", "protocol")} | {"auc": 0.99}))
    summary = experiments.run_experiments("synthetic", str(copy), ["imagenet"], ["full"], data_dir=data_dir,
                                          smoke=True, feature_cache_root=str(root / "caches"), num_views=3)
    assert summary["results"]["full"]["imagenet"]["auc"] == old["auc"] != 0.99
    assert json.loads(stale.read_text())["scored_on"] == "cropped"
    assert json.loads(stale.read_text())["protocol"] == experiments.PROTOCOL
