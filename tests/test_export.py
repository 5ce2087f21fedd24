"""ctl export: the CLI, integer versions, and no half-written version on failure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctl_keras.savedmodel import exporter, versions, warmup

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ctl_keras.export", *args], capture_output=True, text=True, env=ENV)


@pytest.fixture(scope="module")
def trained(untrained_model):
    """An untrained smoke model saved as a model_dir (no training needed to test export)."""
    return untrained_model


@pytest.mark.slow
def test_cli_writes_version_1_of_both_towers(trained, tmp_path):
    config, models, model_dir = trained
    export_dir = tmp_path / "export" / "demo"
    proc = _cli(f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--backbone_weights=none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"scene_tower: {export_dir}/scene_tower/1",
                                        f"product_tower: {export_dir}/product_tower/1"]
    for name in ("scene_tower", "product_tower"):
        path = export_dir / name / "1"
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
        assert os.path.getsize(warmup.warmup_path(str(path))) > 0
        # same weights as the in-memory model: the index refuses embeddings of other weights
        assert exporter.read_meta(str(path))["model_fingerprint"] == exporter.model_fingerprint(models)
    assert not (export_dir / "recommender").exists()


@pytest.mark.slow
def test_cli_missing_model_dir_is_one_line(tmp_path):
    proc = _cli(f"--model_dir={tmp_path / 'nope'}", f"--export_dir={tmp_path / 'e'}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"export: error: model_dir {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").rglob("saved_model.pb"))


def test_cli_requires_flags():
    proc = _cli("--model_dir=x")
    assert proc.returncode != 0 and "--export_dir is required" in proc.stderr


@pytest.mark.slow
def test_export_dying_midway_leaves_no_version(trained, tmp_path, monkeypatch):
    """The product tower's warmup write fails after the scene tower is fully written: neither
    scene_tower/1 nor product_tower/1 (nor any staging dir) is left for a server to load."""
    config, models, _ = trained
    real = warmup.write_warmup

    def failing(version_dir, logs):
        if "product_tower" in version_dir:
            raise OSError("disk full")
        return real(version_dir, logs)

    monkeypatch.setattr(warmup, "write_warmup", failing)
    with pytest.raises(OSError, match="disk full"):
        exporter.export_models(models, config, str(tmp_path))
    for name in ("scene_tower", "product_tower"):
        assert os.listdir(tmp_path / name) == []


def test_next_version_is_shared_and_ignores_other_names(tmp_path):
    """scene_tower has 1 and 2, product_tower 1 and a stray .tmp dir: the next export is 3 for both."""
    for rel in ("scene_tower/1", "scene_tower/2", "product_tower/1", "product_tower/.tmp-9-1", "product_tower/x7"):
        os.makedirs(tmp_path / rel)
        if os.path.basename(rel).isdigit():
            (tmp_path / rel / "saved_model.pb").write_bytes(b"")  # a version holds a SavedModel
    (tmp_path / "scene_tower" / "10").write_text("a file, not a version")
    assert versions.existing_versions(str(tmp_path / "scene_tower")) == [1, 2]
    assert versions.next_version(str(tmp_path), ["scene_tower", "product_tower"]) == 3
    with versions.staged_versions(str(tmp_path), ["scene_tower", "product_tower"]) as (v, staging):
        assert v == 3
        for path in staging.values():
            os.makedirs(path)
            (Path(path) / "saved_model.pb").write_bytes(b"")
            assert not os.path.basename(path).isdigit()  # a server never loads a staging dir
    assert versions.existing_versions(str(tmp_path / "product_tower")) == [1, 3]
    assert versions.latest_version(str(tmp_path / "scene_tower")) == 3


def test_latest_version_of_empty_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported version under .*ctl export"):
        versions.latest_version(str(tmp_path / "scene_tower"))


def test_catalog_index_of_another_model_is_refused_before_export(trained, tmp_path):
    """The recommender bundles an index only if these towers embedded it (weights fingerprint)."""
    import numpy as np

    from ctl_keras.retrieval import bundle
    from ctl_keras.retrieval.index import CatalogIndex, save_index

    config, _, model_dir = trained
    embeddings = np.eye(2, config.embedding_dim, dtype=np.float32)
    index = CatalogIndex(["a", "b"], [0, 0], embeddings, config.categories,
                         meta={"embedding_dim": config.embedding_dim, "model_fingerprint": "another model"})
    save_index(index, tmp_path / "cat")
    with pytest.raises(ValueError, match="model weights differ"):
        bundle.export_towers(model_dir, str(tmp_path / "export"), backbone_weights="none", catalog_index=str(tmp_path / "cat"))
    assert not (tmp_path / "export").exists()
