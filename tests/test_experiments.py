"""experiments: a --smoke run (2 seeds, a 2-rate grid) writes table/PNG/JSON with mean ± std and bootstrap
intervals, picks each trained method's learning rate on validation, "full" trains on full scenes but
scores on cropped ones; a killed run resumes keeping its finished runs; bad names fail clearly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ctl_keras.experiments import table as experiments

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
GRID = "--lr_grid=0.001,0.0003"


def _command(data_dir, out, caches, methods, scenes="cropped,full"):
    return [sys.executable, "-m", "ctl_keras.experiments", "--smoke", f"--data_dir={data_dir}", f"--out={out}",
            f"--feature_cache_root={caches}", f"--methods={methods}", f"--scenes={scenes}", "--seeds=0,1", GRID,
            "--num_views=3"]


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory):
    _, data_dir = synthetic_data
    root = tmp_path_factory.mktemp("experiments")
    out = root / "out"
    proc = subprocess.run(_command(data_dir, out, root / "caches", "hybrid,imagenet"), capture_output=True,
                          text=True, env=ENV, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data_dir, root, out, proc.stdout


@pytest.mark.slow
def test_smoke_run_writes_table_png_and_json(synthetic_data, run):
    config, _ = synthetic_data
    _, _, out, stdout = run
    table = (out / "table.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("| Method | AUC (trained on cropped): mean ± std [95% CI] | AUC (trained on full)")
    assert "Mean ± std over 2 seeds; the interval is a 95% bootstrap over the" in table
    assert "Every number is scored on the CTL-cropped test scenes" in table
    assert any(line.startswith("| Ours (hybrid) |") for line in lines)
    assert "ALL products of the asked category" in table and "picked from [0.0003, 0.001]" in table
    for seed in (0, 1):
        assert (out.parent / "caches" / f"{config.image_size}px_3views_none_seed{seed}").is_dir()
    assert (out / "topk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "categories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # per-category bars, mean over seeds
    per_category = json.loads((out / "results.json").read_text())["results"]["cropped"]["hybrid"]["per_category"]
    assert set(per_category) == set(config.categories) and all(v["auc"] is None or 0 <= v["auc"] <= 1 for v in per_category.values())
    assert "| attention (ours) |" in (out / "attention" / "attention.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["lr_grid"] == [0.0003, 0.001]
    for scene in ("cropped", "full"):
        for method in ("hybrid", "imagenet"):
            r = results["results"][scene][method]
            low, high = r["auc_ci95"]
            assert 0.0 <= low <= r["auc_mean"] <= high <= 1.0 and r["seeds"] == 2
            assert r["trained_on"] == scene and r["scored_on"] == "cropped"
            assert len(r["auc_per_seed"]) == 2 and r["num_questions"] > 0
    assert "[4/4]" in stdout


@pytest.mark.slow
def test_learning_rate_is_chosen_on_validation_and_recorded(run):
    """The grid runs on seed 0, the rate with the best validation AUC trains seed 1; eval.json says so."""
    _, _, out, _ = run
    summary = json.loads((out / "cropped" / "hybrid" / "eval.json").read_text())
    sel = summary["lr_selection"]
    assert sel["grid"] == [0.0003, 0.001] and set(sel["val_auc"]) == {"0.0003", "0.001"}
    best = max(sel["val_auc"].values())
    assert sel["val_auc"][f"{sel['chosen']:g}"] == best and summary["learning_rate"] == sel["chosen"]
    units = sorted(os.listdir(out / "cropped" / "hybrid"))
    assert units == ["eval.json", "seed0_lr0.0003", "seed0_lr0.001", f"seed1_lr{sel['chosen']:g}"]
    seed1 = json.loads((out / "cropped" / "hybrid" / f"seed1_lr{sel['chosen']:g}" / "eval.json").read_text())
    assert seed1["fit"]["learning_rate"] == sel["chosen"] and seed1["fit"]["eval_every"] == 1
    assert json.loads((out / "cropped" / "imagenet" / "eval.json").read_text())["lr_selection"] is None


@pytest.mark.slow
def test_full_mode_trains_on_full_and_scores_on_cropped(run):
    """The training-free ImageNet baseline gets the same numbers in both modes (same cropped test
    scenes); our full-mode model was trained on full scenes and its results.json says so."""
    _, _, out, _ = run
    results = json.loads((out / "results.json").read_text())["results"]
    assert results["full"]["imagenet"]["auc_per_seed"] == results["cropped"]["imagenet"]["auc_per_seed"]
    lr = results["full"]["hybrid"]["learning_rate"]
    trained = json.loads((out / "full" / "hybrid" / f"seed0_lr{lr:g}" / "model" / "results.json").read_text())
    assert trained["trained_on"] == "full" and trained["full_scene"] is True and trained["scored_on"] == "cropped"
    assert results["full"]["hybrid"]["auc_per_seed"][0] == trained["test_auc"]


@pytest.mark.slow
def test_killed_run_resumes_and_keeps_finished_runs(run):
    """SIGKILL a real run once its first trained run is on disk; the same command again finishes,
    does not redo what was kept (same file, same bytes) and writes the whole summary."""
    data_dir, root, _, _ = run
    out = root / "resume"
    command = _command(data_dir, out, root / "caches", "random,ibr", scenes="cropped")
    first = out / "cropped" / "ibr" / "seed0_lr0.0003" / "eval.json"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 1200
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.exists() and proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "cropped" / "ibr" / "eval.json").exists()  # interrupted before the summary
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("seed*/eval.json")}
    assert first in kept and (out / "cropped" / "random" / "eval.json").exists()
    again = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already done, kept" in again.stderr
    for path, (mtime, data) in kept.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
    summary = json.loads((out / "cropped" / "ibr" / "eval.json").read_text())
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1]


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
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.experiments", f"--out={tmp_path}", "--seeds=0,x"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "experiments: error: --seeds=0,x: every entry must be a number"]
