"""Human-evaluation kit (paper Table 4): a self-contained HTML page, a CSV answer sheet, a hidden key.

Each question shows a CTL-cropped scene, the asked category and two products A / B; the annotator
picks the one that goes better with the scene. Which side holds the dataset positive is drawn with a
seeded generator and recorded only in key.json, together with every method's choice (the side with
the smaller distance; a tie counts as "A"). The scorer compares methods with the dataset labels,
with the annotators' majority, and on the questions where the two agree (majority ties excluded and
counted).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os

import numpy as np

from ctl_keras.utils import atomic

KEY_FILE, SHEET_FILE, PAGE_FILE = "key.json", "answers.csv", "index.html"
SIDES = ("A", "B")


def pick_questions(questions: list[dict], num: int, seed: int) -> list[dict]:
    """`num` questions drawn without replacement (all when num >= len), in question_id order."""
    if not questions:
        raise ValueError("there are no test questions to export")
    if num <= 0:
        raise ValueError(f"num_questions must be positive, got {num}")
    rows = np.arange(len(questions))
    if num < len(questions):
        rows = np.random.default_rng(seed).choice(len(questions), size=num, replace=False)
    return sorted((questions[i] for i in rows), key=lambda q: int(q["question_id"]))


def choice_side(d_pos: float, d_neg: float, positive_side: str) -> str:
    """The side a method picks: the one with the smaller distance (ties: "A")."""
    if d_pos == d_neg:
        return "A"
    negative_side = "B" if positive_side == "A" else "A"
    return positive_side if d_pos < d_neg else negative_side


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


_SCRIPT = """
function sheet(){var rows=["question_id,answer"];
document.querySelectorAll(".q").forEach(function(q){var c=q.querySelector("input:checked");
rows.push(q.dataset.id+","+(c?c.value:""));});
var t=rows.join("\\n")+"\\n";document.getElementById("out").value=t;
var a=document.getElementById("dl");a.href="data:text/csv;charset=utf-8,"+encodeURIComponent(t);
a.style.display="inline";}
"""


def render_page(items: list[dict], title: str) -> str:
    """HTML with every image inlined as a data URI: no network, works opened from disk."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:900px;margin:auto}.q{border-bottom:1px solid #ccc;"
             "padding:12px 0}img{width:200px;height:200px;object-fit:contain;background:#eee}"
             ".opts{display:flex;gap:24px}label{display:block;text-align:center}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>For each scene, pick the product (A or B) of the asked "
             "category that goes better with it. When done, press the button and save the sheet "
             f"(or copy it into {SHEET_FILE}).</p>"]
    for n, item in enumerate(items, start=1):
        qid = int(item["question_id"])
        parts.append(f"<div class='q' data-id='{qid}'><h3>Question {n} (id {qid}): "
                     f"{html.escape(item['category'])}</h3><div class='opts'>"
                     f"<div><img alt='scene' src='{_data_uri(item['scene_jpeg'])}'><p>scene</p></div>")
        for side in SIDES:
            parts.append(f"<label><img alt='{side}' src='{_data_uri(item[side + '_jpeg'])}'><br>"
                         f"<input type='radio' name='q{qid}' value='{side}'> {side}</label>")
        parts.append("</div></div>")
    parts.append("<p><button onclick='sheet()'>Make answer sheet</button> "
                 f"<a id='dl' download='{SHEET_FILE}' style='display:none'>save {SHEET_FILE}</a></p>"
                 f"<textarea id='out' rows='8' cols='40'></textarea><script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def write_kit(out_dir: str, items: list[dict], choices: dict[str, list[str]], seed: int,
              title: str = "Complete the Look: which product goes with the scene?") -> dict:
    """Write index.html, answers.csv (blank answers) and key.json; return the key.

    items: {"question_id", "pair_id", "category", "positive", "negative", "positive_side",
    "scene_jpeg", "A_jpeg", "B_jpeg"}; choices: method -> side chosen per item ("A"/"B").
    """
    for name, sides in choices.items():
        if len(sides) != len(items) or any(s not in SIDES for s in sides):
            raise ValueError(f"method {name!r} must give one choice in A/B per question")
    key = {"seed": int(seed), "num_questions": len(items), "methods": sorted(choices), "questions": []}
    for n, item in enumerate(items):
        pos = item["positive_side"]
        key["questions"].append({
            "question_id": int(item["question_id"]), "pair_id": int(item["pair_id"]), "category": item["category"],
            "A": item["positive"] if pos == "A" else item["negative"],
            "B": item["negative"] if pos == "A" else item["positive"],
            "positive_side": pos, "choices": {name: sides[n] for name, sides in sorted(choices.items())}})
    sheet = io.StringIO()
    writer = csv.writer(sheet, lineterminator="\n")
    writer.writerow(["question_id", "answer"])
    writer.writerows([[q["question_id"], ""] for q in key["questions"]])
    atomic.write_text(os.path.join(out_dir, PAGE_FILE), render_page(items, title))
    atomic.write_text(os.path.join(out_dir, SHEET_FILE), sheet.getvalue())
    atomic.write_text(os.path.join(out_dir, KEY_FILE), json.dumps(key, indent=1) + "\n")
    return key


def read_key(kit_dir: str) -> dict:
    path = os.path.join(os.fspath(kit_dir), KEY_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: make the kit with `ctl analysis human-kit`")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def read_sheet(path: str, question_ids: list[int]) -> dict[int, str]:
    """question_id -> "A"/"B"; every problem (line numbers counted from the header = 1) in one error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"answer sheet {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["question_id", "answer"]:
        raise ValueError(f"answer sheet {path}: line 1 must be the header 'question_id,answer'")
    wanted, answers, bad, seen = set(question_ids), {}, [], set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank line at the end of a file
        qid_text = row[0].strip()
        answer = row[1].strip().upper() if len(row) > 1 else ""
        extra = any(c.strip() for c in row[2:])
        if not qid_text.isdigit() or int(qid_text) not in wanted:
            bad.append(f"{line} (unknown question_id {qid_text!r})")
            continue
        qid = int(qid_text)
        if qid in seen:
            bad.append(f"{line} (question {qid} answered twice)")
        elif answer not in SIDES or extra:
            bad.append(f"{line} (answer {','.join(row[1:])!r} is not A or B)")
        else:
            answers[qid] = answer
        seen.add(qid)
    missing = [q for q in question_ids if q not in seen]
    problems = []
    if bad:
        problems.append("malformed rows " + "; ".join(bad))
    if missing:
        problems.append("missing question_ids " + ", ".join(map(str, missing)))
    if problems:
        raise ValueError(f"answer sheet {path}: " + "; ".join(problems))
    return answers


def _accuracy(picks: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(picks, truth)])) if truth else float("nan")


def score(key: dict, sheets: dict[str, dict[int, str]]) -> dict:
    """Per method: accuracy vs dataset labels, vs the annotators' majority, and where both agree."""
    if not sheets:
        raise ValueError("no answer sheets given")
    questions = key["questions"]
    dataset = [q["positive_side"] for q in questions]
    majority = []
    for q in questions:
        votes = [answers[q["question_id"]] for answers in sheets.values()]
        a, b = votes.count("A"), votes.count("B")
        majority.append("A" if a > b else "B" if b > a else None)
    decided = [i for i, m in enumerate(majority) if m is not None]
    agreed = [i for i in decided if majority[i] == dataset[i]]

    def row(picks):
        return {"vs_dataset": _accuracy(picks, dataset),
                "vs_human": _accuracy([picks[i] for i in decided], [majority[i] for i in decided]),
                "on_agreed": _accuracy([picks[i] for i in agreed], [dataset[i] for i in agreed])}

    methods = {name: row([q["choices"][name] for q in questions]) for name in key["methods"]}
    annotators = {name: _accuracy([answers[q["question_id"]] for q in questions], dataset)
                  for name, answers in sheets.items()}
    return {"num_questions": len(questions), "num_annotators": len(sheets), "majority_ties": len(questions) - len(decided),
            "num_agreed": len(agreed), "human_majority_vs_dataset": _accuracy([majority[i] for i in decided],
                                                                             [dataset[i] for i in decided]),
            "annotators_vs_dataset": annotators, "methods": methods}


def markdown(result: dict) -> str:
    pct = lambda v: "n/a" if v != v else f"{100 * v:.1f}%"
    lines = [f"{result['num_questions']} questions, {result['num_annotators']} annotators, "
             f"{result['majority_ties']} majority ties excluded from 'vs human', humans and dataset agree on "
             f"{result['num_agreed']}; human majority vs dataset: {pct(result['human_majority_vs_dataset'])}", "",
             "| method | vs dataset | vs human | where both agree |", "|---|---|---|---|"]
    for name, r in result["methods"].items():
        lines.append(f"| {name} | {pct(r['vs_dataset'])} | {pct(r['vs_human'])} | {pct(r['on_agreed'])} |")
    return "\n".join(lines) + "\n"


def score_kit(kit_dir: str, sheets: list[str], out: str | None = None) -> dict:
    """Score filled sheets against the kit's key; writes <out or kit_dir>/human_scores.{json,md}."""
    key = read_key(kit_dir)
    qids = [q["question_id"] for q in key["questions"]]
    if not sheets:
        raise ValueError("no answer sheets given (--sheets=a.csv,b.csv)")
    names = [os.path.basename(s) for s in sheets]
    if len(set(names)) != len(names):
        raise ValueError("two answer sheets share a file name: " + ", ".join(sheets))
    result = score(key, {name: read_sheet(s, qids) for name, s in zip(names, sheets)})
    out = out or kit_dir
    atomic.write_text(os.path.join(out, "human_scores.json"), json.dumps(result, indent=1) + "\n")
    atomic.write_text(os.path.join(out, "human_scores.md"), markdown(result))
    return result
