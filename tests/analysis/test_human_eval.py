"""Human-evaluation kit and scorer on hand-made questions and answer sheets (no model)."""

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from ctl_keras.analysis import human_eval as he


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _items(m: int):
    sides = ["A", "B"] * m
    return [{"question_id": 10 + i, "pair_id": 100 + i, "category": "shoes", "positive": f"p{i}",
             "negative": f"n{i}", "positive_side": sides[i], "scene_jpeg": _jpeg(i),
             "A_jpeg": _jpeg(50 + i), "B_jpeg": _jpeg(150 + i)} for i in range(m)]


def _sheet(path, rows):
    path.write_text("question_id,answer\n" + "".join(f"{q},{a}\n" for q, a in rows))
    return str(path)


def test_kit_page_is_self_contained_and_has_m_questions(tmp_path):
    key = he.write_kit(str(tmp_path), _items(5), {"ours": ["A", "B", "B", "A", "A"]}, seed=3)
    page = (tmp_path / he.PAGE_FILE).read_text()
    assert page.count("class='q'") == 5
    assert "://" not in page  # no external resources of any scheme
    sources = re.findall(r"(?:src|href)='([^']*)'", page)
    assert len(sources) == 15 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    with open(tmp_path / he.SHEET_FILE) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["question_id", "answer"] and rows[1:] == [[str(10 + i), ""] for i in range(5)]
    stored = json.loads((tmp_path / he.KEY_FILE).read_text())
    assert stored == key and stored["questions"][1]["positive_side"] == "B"
    assert stored["questions"][1]["B"] == "p1" and stored["questions"][1]["A"] == "n1"
    assert [q["choices"]["ours"] for q in stored["questions"]] == ["A", "B", "B", "A", "A"]


def test_pick_questions_is_seeded_and_sorted():
    questions = [{"question_id": i} for i in range(20)]
    a = he.pick_questions(questions, 5, seed=1)
    assert a == he.pick_questions(questions, 5, seed=1) and len(a) == 5
    assert [q["question_id"] for q in a] == sorted(q["question_id"] for q in a)
    assert len(he.pick_questions(questions, 99, seed=1)) == 20
    assert he.choice_side(0.1, 0.9, "B") == "B" and he.choice_side(0.9, 0.1, "B") == "A"


def test_scorer_hand_computed(tmp_path):
    """Dataset A,B,A,B; sheets -> majority A,B,B,A (agree on q1,q2). Method m picks A,A,B,A:
    vs dataset 1/4, vs human 3/4, on agreed {q1 right, q2 wrong} 1/2. "good" = dataset: 1, 1/2, 1."""
    key = {"methods": ["good", "m"], "questions": [
        {"question_id": q, "positive_side": p, "choices": {"good": p, "m": m}}
        for q, p, m in zip([1, 2, 3, 4], "ABAB", "AABA")]}
    sheets = {}
    for name, answers in {"s1": "ABBA", "s2": "ABBB", "s3": "BAAA"}.items():
        path = _sheet(tmp_path / f"{name}.csv", zip([1, 2, 3, 4], answers))
        sheets[name] = he.read_sheet(path, [1, 2, 3, 4])
    result = he.score(key, sheets)
    assert result["num_agreed"] == 2 and result["majority_ties"] == 0
    assert result["human_majority_vs_dataset"] == 0.5
    assert result["methods"]["m"] == {"vs_dataset": 0.25, "vs_human": 0.75, "on_agreed": 0.5}
    assert result["methods"]["good"] == {"vs_dataset": 1.0, "vs_human": 0.5, "on_agreed": 1.0}
    assert result["annotators_vs_dataset"] == {"s1": 0.5, "s2": 0.75, "s3": 0.25}
    assert "| m | 25.0% | 75.0% | 50.0% |" in he.markdown(result)


def test_majority_ties_are_excluded_from_vs_human():
    """Two annotators disagree on q1 -> q1 has no human label; q2 both say B (= dataset)."""
    key = {"methods": ["m"], "questions": [{"question_id": 1, "positive_side": "A", "choices": {"m": "A"}},
                                           {"question_id": 2, "positive_side": "B", "choices": {"m": "A"}}]}
    result = he.score(key, {"a": {1: "A", 2: "B"}, "b": {1: "B", 2: "B"}})
    assert result["majority_ties"] == 1 and result["methods"]["m"]["vs_human"] == 0.0
    assert result["methods"]["m"]["vs_dataset"] == 0.5


def test_malformed_and_missing_rows_are_named(tmp_path):
    path = _sheet(tmp_path / "bob.csv", [(1, "A"), (2, "C"), (99, "A"), (1, "B")])
    with pytest.raises(ValueError) as err:
        he.read_sheet(path, [1, 2, 3])
    message = str(err.value)
    assert "bob.csv" in message and "3 (answer" in message and "4 (unknown question_id '99')" in message
    assert "5 (question 1 answered twice)" in message and "missing question_ids 3" in message
    blank = _sheet(tmp_path / "blank.csv", [(1, ""), (2, "b")])
    with pytest.raises(ValueError, match=r"blank.csv: malformed rows 2 \(answer"):
        he.read_sheet(blank, [1, 2])
    assert he.read_sheet(_sheet(tmp_path / "ok.csv", [(2, "b"), (1, " a ")]), [1, 2]) == {1: "A", 2: "B"}


def test_human_score_cli_one_line_errors_and_table(tmp_path):
    """The CLI prints the Markdown table for good sheets and one stderr line naming bad rows."""
    import subprocess
    import sys

    he.write_kit(str(tmp_path), _items(2), {"ours": ["A", "A"]}, seed=0)  # positives: A, B
    good = _sheet(tmp_path / "good.csv", [(10, "A"), (11, "B")])
    bad = _sheet(tmp_path / "bad.csv", [(10, "A"), (11, "x")])
    run = lambda sheets: subprocess.run(
        [sys.executable, "-m", "ctl_keras.analysis", "human-score", f"--kit={tmp_path}", f"--sheets={sheets}"],
        capture_output=True, text=True, timeout=120)
    ok = run(good)
    assert ok.returncode == 0, ok.stderr
    assert "| ours | 50.0% | 50.0% | 50.0% |" in ok.stdout  # ours picks A twice; truth A, B
    failed = run(bad)
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode == 1 and len(lines) == 1
    assert "bad.csv" in lines[0] and "malformed rows 3" in lines[0] and "Traceback" not in failed.stderr
