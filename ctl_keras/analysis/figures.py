"""PNG figures: attention/saliency overlays (paper Figure 6) and most/least compatible products (Figure 7).

Matplotlib runs on the Agg backend (no display on build machines). Every PNG is written to a temp
name in its directory and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from ctl_keras.utils import atomic


def save_figure(fig, path: str) -> str:
    """Save `fig` to `path` (PNG) atomically and close it."""
    path = os.fspath(path)
    try:
        atomic.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def _show_map(ax, image, cell_map, boxes, relevant, title):
    size = image.shape[0]
    ax.imshow(image)
    # extent stretches the g x g map over the view: cell (i, j) covers rows i*S/g.. and columns j*S/g..
    ax.imshow(np.asarray(cell_map), cmap="jet", alpha=0.45, interpolation="nearest", extent=(0, size, size, 0))
    for left, top, right, bottom in np.asarray(boxes).reshape(-1, 4):
        ax.add_patch(Rectangle((left * size, top * size), (right - left) * size, (bottom - top) * size,
                               fill=False, edgecolor="white", linewidth=1.5))
    grid = relevant.shape[0]
    cell = size / grid
    for i, j in zip(*np.nonzero(relevant)):
        ax.add_patch(Rectangle((j * cell, i * cell), cell, cell, fill=False, edgecolor="lime",
                               linewidth=0.8, linestyle="--"))
    top1 = int(np.argmax(np.asarray(cell_map).reshape(-1)))
    ax.add_patch(Rectangle(((top1 % grid) * cell, (top1 // grid) * cell), cell, cell, fill=False,
                           edgecolor="red", linewidth=2))
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def attention_overlay(path: str, image, attention, saliency, boxes, relevant, caption: str,
                      saliency_title: str = "saliency") -> str:
    """Scene with its attention map and its saliency map side by side.

    White: other products' boxes (view frame); dashed green: relevant cells; red: each map's top-1 cell.
    """
    image = np.asarray(image, np.uint8)
    relevant = np.asarray(relevant, bool)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.3))
    _show_map(axes[0], image, attention, boxes, relevant, "attention")
    _show_map(axes[1], image, saliency, boxes, relevant, saliency_title)
    fig.suptitle(caption, fontsize=9)
    return save_figure(fig, path)


def compatibility_grid(path: str, rows: list[dict]) -> str:
    """Figure 7 analog. Each row: {"scene": uint8 [S,S,3], "category": str, "title": str,
    "best": [(image, d*), ...], "worst": [(image, d*), ...]} -> scene | 3 most | 3 least compatible."""
    if not rows:
        raise ValueError("no scenes to draw")
    cols = 1 + max(len(r["best"]) for r in rows) + max(len(r["worst"]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.9 * len(rows)), squeeze=False)
    for ax in axes.reshape(-1):
        ax.axis("off")
    for r, row in enumerate(rows):
        axes[r, 0].imshow(np.asarray(row["scene"], np.uint8))
        axes[r, 0].set_title(f"{row.get('title', '')}\nasked: {row['category']}", fontsize=7)
        panels = ([("most", k + 1, im, d) for k, (im, d) in enumerate(row["best"])]
                  + [("least", k + 1, im, d) for k, (im, d) in enumerate(row["worst"])])
        for c, (kind, rank, image, d) in enumerate(panels, start=1):
            axes[r, c].imshow(np.asarray(image, np.uint8))
            axes[r, c].set_title(f"{kind} #{rank}\nd*={d:.3f}", fontsize=7,
                                 color="green" if kind == "most" else "red")
    fig.suptitle("scene (product cropped out) | 3 most compatible | 3 least compatible", fontsize=9)
    return save_figure(fig, path)
