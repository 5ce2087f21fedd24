"""Report helpers on hand-made results: Markdown table layout, eval table, PNG and atomic JSON."""

import json

from ctl_keras.utils.atomic import write_json
from ctl_keras.evaluation.report import eval_table, markdown_table, plot_topk


def _result(auc, topk):
    """One category 'tops' with 4 queries over 6 candidates."""
    per = {"tops": {"auc": auc, "topk": topk, "num_queries": 4, "num_candidates": 6, "num_questions": 4}}
    return {"auc": auc, "topk": topk, "k_max": len(topk), "num_queries": 4, "num_questions": 4, "per_category": per}


RESULTS = {"cropped": {"hybrid": _result(0.9, [0.5] * 4 + [0.75] * 6), "random": _result(0.5, [0.25] * 10)},
           "full": {"hybrid": _result(0.8, [0.25] * 10)}}


def test_markdown_table_rows_columns_and_missing_cells():
    table = markdown_table(RESULTS, {"hybrid": "Ours"}, ["cropped", "full"])
    lines = table.splitlines()
    assert lines[0] == ("| Method | AUC (trained on cropped) | AUC (trained on full) | Top-1 (trained on cropped) "
                        "| Top-1 (trained on full) | Top-5 (trained on cropped) | Top-5 (trained on full) "
                        "| Top-10 (trained on cropped) | Top-10 (trained on full) |")
    # hybrid: Top-5 cropped is topk[4] = 0.75; random was not run on full scenes -> "–".
    assert lines[2] == "| Ours | 0.900 | 0.800 | 0.500 | 0.250 | 0.750 | 0.250 | 0.750 | 0.250 |"
    assert lines[3] == "| random | 0.500 | – | 0.250 | – | 0.250 | – | 0.250 | – |"
    assert "Candidates per query on average: 6.0 (trained on cropped" in table
    assert "Every number is scored on the CTL-cropped test scenes" in lines[5]


def test_eval_table_has_category_and_overall_rows():
    text = eval_table(_result(0.9, [0.5] * 10))
    assert text.splitlines()[0].split()[:4] == ["category", "queries", "cands", "AUC"]
    assert text.splitlines()[-1].split()[:3] == ["ALL", "4", "0.900"]


def test_png_and_json_are_written_whole(tmp_path):
    plot_topk(RESULTS, {}, ["cropped", "full"], str(tmp_path / "topk.png"))
    assert (tmp_path / "topk.png").read_bytes()[:4] == b"\x89PNG"
    write_json(str(tmp_path / "r.json"), {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "topk.png"]


def _blue_pixels(path) -> int:
    """Pixels of matplotlib's first colour (#1f77b4), the bars of the first method."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(np.sum(np.abs(rgb - [0x1F, 0x77, 0xB4]).sum(axis=-1) < 30))


def test_eval_plots_are_written_beside_the_json_and_track_the_numbers(tmp_path):
    """Same layout, AUC and Top-K 0.9 vs 0.3 per category: the first drawing has about 3x the bar area."""
    from PIL import Image

    from ctl_keras.evaluation.report import write_eval_plots

    areas = []
    for value in (0.9, 0.3):
        result = {**_result(value, [value] * 10), "method": "hybrid", "trained_on": "cropped"}
        out = tmp_path / str(value)
        out.mkdir()
        topk, categories = write_eval_plots(result, str(out / "eval.json"))
        assert (topk, categories) == (str(out / "eval_topk.png"), str(out / "eval_categories.png"))
        with Image.open(topk) as image:
            assert image.size[0] >= 640  # one panel drawn wide enough to read at 100%
        areas.append(_blue_pixels(categories))
    assert 2.5 < areas[0] / areas[1] < 3.5


def test_category_bars_of_several_methods_and_modes(tmp_path):
    from PIL import Image

    from ctl_keras.evaluation.report import plot_categories

    plot_categories(RESULTS, {"hybrid": "Ours"}, ["cropped", "full"], str(tmp_path / "categories.png"))
    with Image.open(tmp_path / "categories.png") as image:
        assert image.size[0] > image.size[1]  # one column per training scene mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["categories.png"]  # no temp file left
