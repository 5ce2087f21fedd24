"""Reports: the evaluate table, the Table-2-like Markdown table, Top-K curves (Figure 5) and JSON."""

from __future__ import annotations

import os

from ctl_keras.utils import atomic
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or opened
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, plt) -> None:
    try:
        atomic.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        plt.close(fig)


DPI = 110  # with the sizes below: ~700 px per Top-K panel, readable at 100% in a browser or a viewer


def plot_topk(results: dict, titles: dict, scenes: list[str], path: str) -> None:
    """Figure 5 analog: Top-K accuracy vs K on cropped test scenes, one panel per training scene mode."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(scenes), figsize=(6.4 * len(scenes), 4.2), squeeze=False)
    for ax, scene in zip(axes[0], scenes):
        for method, r in results.get(scene, {}).items():
            topk = r.get("topk") or []
            ax.plot(range(1, len(topk) + 1), topk, label=titles.get(method, method),
                    linewidth=2.2 if method == "hybrid" else 1.2)
        ax.set_title(f"trained on {scene} scenes (scored on cropped)")
        ax.set_xlabel("K (the first K products of each ranking)")
        ax.set_ylabel("Top-K accuracy (fraction of test pairs)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path, plt)


def plot_categories(results: dict, titles: dict, scenes: list[str], path: str) -> None:
    """Per-category bars: AUC (top row) and Top-K at K = min(10, k_max) (bottom row) of every method,
    one column per training scene mode; a dotted line marks each method's overall value."""
    plt = _pyplot()
    ncats = max((len(r["per_category"]) for s in scenes for r in results.get(s, {}).values()), default=1)
    fig, axes = plt.subplots(2, len(scenes), figsize=(max(7.0, 0.9 * ncats + 2.5) * len(scenes), 7.6),
                             squeeze=False)
    for col, scene in enumerate(scenes):
        methods = results.get(scene, {})
        k = min(10, min((r["k_max"] for r in methods.values()), default=10))
        for row, metric in enumerate(("auc", "topk")):
            ax = axes[row][col]
            width = 0.8 / max(1, len(methods))
            value = (lambda x: x.get("auc")) if metric == "auc" else (lambda x: _topk(x, k))
            for j, (method, r) in enumerate(methods.items()):
                names = list(r["per_category"])
                heights = [value(r["per_category"][n]) for n in names]
                xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
                bars = ax.bar(xs, [h if h is not None else 0 for h in heights], width,
                              label=titles.get(method, method))
                if value(r) is not None:
                    ax.axhline(value(r), color=bars.patches[0].get_facecolor(), linestyle=":", linewidth=1)
                ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
            label = "AUC" if metric == "auc" else f"Top-{k} accuracy"
            ax.set_ylabel(label)
            ax.set_xlabel("category")
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(f"{label} per category, trained on {scene} scenes (scored on cropped)")
            if methods and row == 0:
                ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    _save(fig, path, plt)


def eval_plot_paths(json_path: str) -> tuple[str, str]:
    """The PNGs written beside an evaluation's JSON: <stem>_topk.png, <stem>_categories.png."""
    stem = os.path.splitext(json_path)[0]
    return f"{stem}_topk.png", f"{stem}_categories.png"


def write_eval_plots(result: dict, json_path: str) -> tuple[str, str]:
    """Top-K curve and per-category bars of one evaluate result, beside its JSON; returns the paths."""
    scene = result.get("trained_on", "unknown")
    results = {scene: {result.get("method", "model"): result}}
    topk, categories = eval_plot_paths(json_path)
    plot_topk(results, {}, [scene], topk)
    plot_categories(results, {}, [scene], categories)
    return topk, categories
