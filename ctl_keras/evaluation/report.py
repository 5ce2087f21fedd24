"""Reports: the evaluate table, the Table-2-like Markdown table, Top-K curves (Figure 5) and JSON."""

from __future__ import annotations


from ctl_keras import atomic
from ctl_keras.evaluation.scoring import CANDIDATE_SET

CANDIDATES_NOTE = CANDIDATE_SET  # one wording: evaluation/scoring.py
TABLE_KS = (1, 5, 10)
SCORED_ON_NOTE = ("Every number is scored on the CTL-cropped test scenes (the product is not visible); "
                  "a column's scene mode is what the method was TRAINED on.")


def _topk(result: dict, k: int):
    topk = result.get("topk")
    return topk[k - 1] if topk and k <= len(topk) else None


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def eval_table(result: dict) -> str:
    """Plain-text table of one evaluation: per category and overall, AUC and Top-K at a few K."""
    ks = [k for k in (1, 5, 10, 20, result["k_max"]) if k <= result["k_max"]]
    ks = sorted(set(ks))
    head = f"{'category':<16}{'queries':>8}{'cands':>7}{'AUC':>8}" + "".join(f"{'Top-' + str(k):>8}" for k in ks)
    lines = [head, "-" * len(head)]
    rows = [(name, r) for name, r in result["per_category"].items()] + [("ALL", result)]
    for name, r in rows:
        cands = str(r.get("num_candidates", ""))
        lines.append(f"{name:<16}{r['num_queries']:>8}{cands:>7}{_fmt(r['auc']):>8}"
                     + "".join(f"{_fmt(_topk(r, k)):>8}" for k in ks))
    return "\n".join(lines)


def markdown_table(results: dict, titles: dict, scenes: list[str]) -> str:
    """Rows = methods, columns = AUC and Top-K per training scene mode (paper Table 2 layout).

    `results[scene][method]` is a score_split result on cropped test scenes of a method trained on
    `scene` scenes (or missing when not run).
    """
    methods = []
    for scene in scenes:
        methods += [m for m in results.get(scene, {}) if m not in methods]
    k_max = max((r["k_max"] for s in scenes for r in results.get(s, {}).values()), default=0)
    ks = [k for k in TABLE_KS if k <= k_max]
    head = (["Method"] + [f"AUC (trained on {s})" for s in scenes]
            + [f"Top-{k} (trained on {s})" for k in ks for s in scenes])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        cells = [titles.get(m, m)]
        cells += [_fmt(results.get(s, {}).get(m, {}).get("auc")) for s in scenes]
        cells += [_fmt(_topk(results.get(s, {}).get(m, {}), k)) for k in ks for s in scenes]
        lines.append("| " + " | ".join(cells) + " |")
    sizes = []
    for s in scenes:
        r = next(iter(results.get(s, {}).values()), None)
        if r:
            per = r["per_category"].values()
            mean = sum(c["num_candidates"] * c["num_queries"] for c in per) / max(1, r["num_queries"])
            sizes.append(f"{mean:.1f} (trained on {s}, {r['num_queries']} queries, {r['num_questions']} questions)")
    note = CANDIDATES_NOTE + (" Candidates per query on average: " + "; ".join(sizes) + "." if sizes else "")
    return "\n".join(lines) + "\n\n" + SCORED_ON_NOTE + " " + note + "\n"


def plot_topk(results: dict, titles: dict, scenes: list[str], path: str) -> None:
    """Figure 5 analog: Top-K accuracy vs K on cropped test scenes, one panel per training scene mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scenes), figsize=(5.5 * len(scenes), 4.2), squeeze=False)
    for ax, scene in zip(axes[0], scenes):
        for method, r in results.get(scene, {}).items():
            topk = r.get("topk") or []
            ax.plot(range(1, len(topk) + 1), topk, label=titles.get(method, method),
                    linewidth=2.2 if method == "hybrid" else 1.2)
        ax.set_title(f"trained on {scene} scenes (scored on cropped)")
        ax.set_xlabel("K")
        ax.set_ylabel("Top-K accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        atomic.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
