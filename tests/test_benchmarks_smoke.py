"""Every script of benchmarks/ runs to the end with tiny arguments (`--smoke`: benchmarks/timing.py's
tiny config and loop sizes). Figures are not checked (timing belongs to the scripts, not to tests);
that each script runs, prints its table and exits 0 is. A new script must get its tiny arguments here."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
HELPERS = {"timing.py", "train_step_parts.py"}  # imported by the scripts, not run

# script -> (arguments, a string its output must contain). {data} is a copy of the session's built
# synthetic dataset, {tmp} a scratch directory.
TINY = {
    "ann.py": (["--n=2000", "--dim=8", "--queries=5", "--centres=20", "--noise=1.5", "--nprobe=4", "--ef_search=16",
                "--backends=ivf,ivf_sq8,ivf_pq,hnsw,milvus", "--milvus_n=500", "--pq_rerank=4,8"], "recall"),
    "catalog_embedding.py": (["--products=16", "--reps=1", "--batch_size=8", "--notwo_workers"], "images/s"),
    "complete_look.py": (["--num_categories=2", "--per_category=20", "--k=3"], "speed-up"),
    "download.py": (["--images=6", "--workers=2", "--repeats=1", "--size_kb=2"], "images/s"),
    "feature_cache.py": (["--data_dir={data}", "--work_dir={tmp}/feature_cache", "--compare_epochs=2",
                          "--epochs=1", "--backbone_precisions=float32,bfloat16", "--build_repeats=1"],
                         "cache build vs float32"),
    "pipeline_throughput.py": (["--num_scenes=12", "--image_size=64", "--batch_size=4", "--backbone_batches=1",
                                "--eval_repeats=1", "--data_dir={tmp}/pipeline_data"], "/s"),
    "retrieval.py": (["--queries=3", "--dim=8"], "ms"),
    "serve_look.py": (["--per_category=10", "--requests_per_client=2", "--concurrency=1,2", "--repeats=1",
                       "--backbone_precisions=float32,bfloat16"], "bfloat16 vs float32: looks/s"),
    "serving_latency.py": (["--batch_sizes=1"], "savedmodel"),
    "train_step.py": (["--repeats=1", "--data_dir={data}", "--host_steps=4", "--per_call=2",
                       "--out={tmp}/train_step.json", "--parts=host,roofline,breakdown,switches,variance,precision"],
                      "bfloat16 cache, mixed_bfloat16 heads"),
}


def _scripts():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(BENCHMARKS, "*.py"))
                  if os.path.basename(p) not in HELPERS)


def test_every_script_has_tiny_arguments():
    missing = [s for s in _scripts() if s not in TINY]
    assert not missing, f"add tiny arguments for {missing} to TINY"
    assert not set(TINY) - set(_scripts()), "TINY names scripts that no longer exist"


@pytest.fixture(scope="module")
def bench_data(synthetic_data, tmp_path_factory):
    """A copy of the built dataset: the scripts add feature caches into their data_dir."""
    _, data_dir = synthetic_data
    copy = tmp_path_factory.mktemp("bench") / "data"
    shutil.copytree(data_dir, copy)
    return str(copy)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_with_tiny_arguments(script, bench_data, tmp_path):
    args, expected = TINY[script]
    args = [a.format(data=bench_data, tmp=tmp_path) for a in args]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), "--smoke", *args],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=900)
    assert proc.returncode == 0, f"{script} exit {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert expected in proc.stdout, f"{script} printed:\n{proc.stdout[-3000:]}"
