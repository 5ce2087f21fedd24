"""The multi-seed Table 2 of ctl_keras.experiments: mean ± std over seeds and a 95% bootstrap interval.

`results[scene][method]` is a method's summary (evaluation.selection.summarize plus "learning_rate",
"k_max"); a column's scene mode is what the method was TRAINED on, every number is scored on the
cropped test scenes.
"""

from __future__ import annotations

from ctl_keras.evaluation.report import CANDIDATES_NOTE, SCORED_ON_NOTE

TABLE_KS = (1, 10)


def _auc_cell(r: dict | None) -> str:
    if not r:
        return "–"
    low, high = r["auc_ci95"]
    return f"{r['auc_mean']:.3f} ± {r['auc_std']:.3f} [{low:.3f}, {high:.3f}]"


def _topk_cell(r: dict | None, k: int) -> str:
    if not r or k > len(r["topk_mean"]):
        return "–"
    return f"{r['topk_mean'][k - 1]:.3f}"


def _lr_cell(r: dict | None) -> str:
    return "–" if not r or r.get("learning_rate") is None else f"{r['learning_rate']:g}"


def markdown(results: dict, titles: dict, scenes: list[str]) -> str:
    methods = []
    for scene in scenes:
        methods += [m for m in results.get(scene, {}) if m not in methods]
    head = (["Method"] + [f"AUC (trained on {s}): mean ± std [95% CI]" for s in scenes]
            + [f"Top-{k} ({s})" for k in TABLE_KS for s in scenes] + [f"lr ({s})" for s in scenes])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        rows = [results.get(s, {}).get(m) for s in scenes]
        cells = [titles.get(m, m)] + [_auc_cell(r) for r in rows]
        cells += [_topk_cell(r, k) for k in TABLE_KS for r in rows] + [_lr_cell(r) for r in rows]
        lines.append("| " + " | ".join(cells) + " |")
    any_row = next((r for s in scenes for r in results.get(s, {}).values()), None)
    stats = ""
    if any_row:
        stats = (f"Mean ± std over {any_row['seeds']} seeds; the interval is a 95% bootstrap over the "
                 f"{any_row['num_questions']} test questions (same resample for every seed). lr: the Adam "
                 "learning rate each trained method picked from the same grid on validation AUC (first seed).")
    return "\n".join(lines) + "\n\n" + SCORED_ON_NOTE + " " + stats + " " + CANDIDATES_NOTE + "\n"


def plot_rows(results: dict) -> dict:
    """The summaries in the shape report.plot_topk / plot_categories read ({"topk", "k_max", "auc",
    "per_category"} per method; per category, the mean over seeds)."""
    return {s: {m: {"topk": r["topk_mean"], "k_max": r["k_max"], "auc": r["auc_mean"],
                    "per_category": r.get("per_category", {})} for m, r in by.items()}
            for s, by in results.items()}
