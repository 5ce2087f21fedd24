"""Report helpers on hand-made results: Markdown table layout, eval table, PNG and atomic JSON."""

import json

from ctl_keras.atomic import write_json
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
