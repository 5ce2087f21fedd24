"""Attention hit rates (paper Table 3): does a map's top region fall on another labeled product?

Geometry. `other_boxes` are normalized (left, top, right, bottom) in the CTL-cropped scene. The model
sees the eval view of that scene: stretched to resize_size x resize_size (aspect ratio NOT kept), then
the central image_size square (pipeline.eval_view). A normalized coordinate v of the cropped scene is
at pixel v * R of the resized image and at (v * R - o) / S of the view, o = (R - S) // 2; the same
formula holds for x and y because the resize stretches both axes to R. The g x g grid of the
attention map tiles the view (row = y, column = x, like the conv4 map it is pooled from).

A cell is relevant when MORE than half of its area is covered by the union of the mapped boxes.
Scenes without any relevant cell cannot score a hit; they are excluded from the rates and counted.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

KS = (1, 3)


def view_boxes(boxes, image_size: int, resize_size: int) -> np.ndarray:
    """[k, 4] boxes of the cropped scene -> [k', 4] boxes of the center view (clipped; empty ones dropped)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    offset = (resize_size - image_size) // 2
    mapped = np.clip((boxes * resize_size - offset) / image_size, 0.0, 1.0)
    keep = (mapped[:, 2] > mapped[:, 0]) & (mapped[:, 3] > mapped[:, 1])
    return mapped[keep]


def _union_area(boxes: np.ndarray) -> float:
    """Exact area of a union of axis-aligned boxes (coordinate compression over x)."""
    if len(boxes) == 0:
        return 0.0
    xs = np.unique(np.concatenate([boxes[:, 0], boxes[:, 2]]))
    area = 0.0
    for x0, x1 in zip(xs[:-1], xs[1:]):
        active = boxes[(boxes[:, 0] <= x0) & (boxes[:, 2] >= x1)]
        if len(active) == 0:
            continue
        spans = sorted(zip(active[:, 1], active[:, 3]))
        covered, start, end = 0.0, spans[0][0], spans[0][1]
        for top, bottom in spans[1:]:
            if top > end:
                covered += end - start
                start, end = top, bottom
            else:
                end = max(end, bottom)
        area += (x1 - x0) * (covered + end - start)
    return area


def cell_coverage(boxes, grid: int) -> np.ndarray:
    """[g, g] fraction of each cell covered by the union of `boxes` (normalized view coordinates)."""
    # In grid units every cell is a unit square, so its covered area is directly the fraction.
    scaled = np.asarray(boxes, np.float64).reshape(-1, 4) * grid
    out = np.zeros((grid, grid))
    for i in range(grid):
        for j in range(grid):
            clipped = np.stack([np.clip(scaled[:, 0], j, j + 1), np.clip(scaled[:, 1], i, i + 1),
                                np.clip(scaled[:, 2], j, j + 1), np.clip(scaled[:, 3], i, i + 1)], axis=1)
            clipped = clipped[(clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])]
            out[i, j] = _union_area(clipped)
    return out


def relevant_cells(boxes, grid: int) -> np.ndarray:
    """[g, g] bool: cells more than half covered by the union of `boxes`."""
    return cell_coverage(boxes, grid) > 0.5


def topk_cells(maps: np.ndarray, k: int) -> np.ndarray:
    """[N, k] flat indices of each map's k largest cells (ties: the lower index first)."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    return np.argsort(-flat, axis=1, kind="stable")[:, :k]


def hit_rates(maps, relevant, ks: Sequence[int] = KS) -> dict:
    """{"top1", "top3", "scenes", "excluded_no_relevant"} for [N, g, g] maps and relevance masks."""
    maps, relevant = np.asarray(maps), np.asarray(relevant, bool)
    if maps.shape != relevant.shape:
        raise ValueError(f"maps {maps.shape} and relevance masks {relevant.shape} differ in shape")
    flat = relevant.reshape(len(relevant), -1)
    included = flat.any(axis=1)
    out = {"scenes": int(included.sum()), "excluded_no_relevant": int((~included).sum())}
    for k in ks:
        if not included.any():
            out[f"top{k}"] = float("nan")
            continue
        top = topk_cells(maps[included], k)
        hits = np.take_along_axis(flat[included], top, axis=1).any(axis=1)
        out[f"top{k}"] = float(hits.mean())
    return out


def random_maps(num: int, grid: int, seed: int) -> np.ndarray:
    """[N, g, g] i.i.d. uniform scores: their ranking is a uniformly random permutation per scene."""
    return np.random.default_rng(seed).random((num, grid, grid))


def random_expected(relevant, ks: Sequence[int] = KS) -> dict:
    """Expected top-k hit rate of a uniformly random ranking: mean of 1 - C(n-r, k) / C(n, k)."""
    flat = np.asarray(relevant, bool).reshape(len(relevant), -1)
    counts = flat.sum(axis=1)
    counts = counts[counts > 0]
    n = flat.shape[1]
    out = {}
    for k in ks:
        if len(counts) == 0:
            out[f"top{k}"] = float("nan")
            continue
        misses = [math.comb(n - int(r), k) / math.comb(n, k) for r in counts]
        out[f"top{k}"] = float(1.0 - np.mean(misses))
    return out


def markdown_table(rows: dict[str, dict], ks: Sequence[int] = KS) -> str:
    """Table 3 analog: one row per method, top-k hit rates in percent."""
    head = "| method | " + " | ".join(f"top-{k} hit" for k in ks) + " |"
    lines = [head, "|---|" + "---|" * len(ks)]
    for name, values in rows.items():
        cells = " | ".join(f"{100 * values[f'top{k}']:.1f}%" for k in ks)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines) + "\n"
