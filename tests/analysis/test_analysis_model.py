"""Analysis commands on the tiny synthetic fixture with an untrained (seeded) smoke model."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ctl_keras.analysis import human_eval, jobs


@pytest.fixture(scope="module")
def model_dir(synthetic_data, untrained_model, tmp_path_factory):
    """A copy of the untrained smoke model whose results.json records the dataset, as train.py writes it."""
    directory = tmp_path_factory.mktemp("analysis_model") / "model"
    shutil.copytree(untrained_model[2], directory)
    (directory / "results.json").write_text(json.dumps({"data_dir": synthetic_data[1], "trained_on": "cropped"}))
    return str(directory)


def test_saliency_map_shape_and_finite(synthetic_data, model_dir):
    from ctl_keras.model import run_dir as model_io
    from ctl_keras.analysis.saliency import SceneSaliency

    config, _ = synthetic_data
    _, models = model_io.load_trained(model_dir)
    images = np.random.default_rng(0).uniform(0, 255, (3, config.image_size, config.image_size, 3))
    positives = np.eye(config.embedding_dim, dtype=np.float32)[:3]
    maps = SceneSaliency(models.scene_tower, config)(images, np.array([0, 1, 0]), positives)
    assert maps.shape == (3, config.local_grid, config.local_grid)
    assert np.all(np.isfinite(maps)) and maps.max() > 0


@pytest.mark.slow
def test_attention_command_writes_table_and_overlays(model_dir, tmp_path):
    result = jobs.run_attention(model_dir, str(tmp_path), num_overlays=2, batch_size=8)
    stored = json.loads((tmp_path / "attention.json").read_text())
    assert stored["pairs"] == result["pairs"] > 0 and "tf_keras_vis.saliency.Saliency" in stored["saliency_method"]
    rates = stored["rates"]
    assert set(rates) == {"attention (ours)", "random (seed 0)", "random (expectation)",
                          "spectral-residual saliency (image only)", "gradient saliency (sees the positive)"}
    assert "SpectralResidual" in stored["spectral_saliency_method"]
    # Every pair counts (the paper's rule): the rates are over all of them.
    assert all(row["scenes"] == stored["pairs"] for row in rates.values() if "scenes" in row)
    for row in rates.values():
        assert 0.0 <= row["top1"] <= row["top3"] <= 1.0
    assert "| attention (ours) |" in (tmp_path / "attention.md").read_text()
    overlays = sorted(os.listdir(tmp_path / "overlays"))
    assert len(overlays) == 2 and all(name.endswith(".png") for name in overlays)


@pytest.mark.slow
def test_figures_png_is_written_and_not_blank(model_dir, tmp_path):
    path = jobs.run_figures(model_dir, str(tmp_path), num_scenes=2)
    image = np.asarray(Image.open(path).convert("L"), np.float64)
    assert image.shape[0] > 100 and image.shape[1] > 300 and image.std() > 10


@pytest.mark.slow
def test_human_kit_from_model(synthetic_data, model_dir, tmp_path):
    key = jobs.run_human_kit(model_dir, str(tmp_path), num_questions=3, methods=["ours", "random"])
    assert key["num_questions"] == 3 and key["methods"] == ["ours", "random"]
    assert all(set(q["choices"].values()) <= {"A", "B"} for q in key["questions"])
    page = (tmp_path / "index.html").read_text()
    assert page.count("class='q'") == 3 and "://" not in page
    sheet = tmp_path / "a.csv"
    sheet.write_text("question_id,answer\n" + "".join(f"{q['question_id']},{q['positive_side']}\n"
                                                      for q in key["questions"]))
    result = human_eval.score_kit(str(tmp_path), [str(sheet)])
    assert result["human_majority_vs_dataset"] == 1.0 and (tmp_path / "human_scores.md").exists()
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        jobs.run_human_kit(model_dir, str(tmp_path / "x"), num_questions=2, methods=["nope"])


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        jobs.run_attention(str(tmp_path / "none"), str(tmp_path / "out"))


def test_view_boxes_match_the_pipeline_eval_view(synthetic_data):
    """A white box drawn in a non-square 40x80 scene lands, after pipeline.eval_view (stretch to 72,
    center 64 crop), inside the cells view_boxes + relevant_cells predict."""
    from ctl_keras.analysis import attention_hits as ah
    from ctl_keras.data import pipeline

    config, _ = synthetic_data
    box = [0.5, 0.0, 1.0, 0.5]  # right half, top half of the cropped scene
    scene = np.zeros((40, 80, 3), np.float32)
    scene[:20, 40:] = 255.0
    view = np.asarray(pipeline.eval_view(scene, config))[..., 0]
    mapped = ah.view_boxes([box], config.image_size, config.resize_size)[0]
    s = config.image_size
    left, bottom = int(round(mapped[0] * s)), int(round(mapped[3] * s))
    assert view[: bottom - 1, left + 1:].min() > 200 and view[bottom + 1:, :].max() < 50
    assert view[:, : left - 1].max() < 50
    expected = np.zeros((config.local_grid,) * 2, bool)
    expected[:2, 2:] = True  # 4x4 grid: top-right 2x2 block
    np.testing.assert_array_equal(ah.relevant_cells([mapped], config.local_grid), expected)
