"""Attention hit rates (paper Table 3): does a map's top region fall on a labeled product?

The paper (§5.4): "we divide the image into 7×7 regions, and a region is considered 'relevant' if it
significantly overlaps (i.e. larger than half the area of a region) with any product's bounding box.
We then calculate the attention map (7 × 7) for all test scene images and rank the 49 regions
according to their scores. If the top-1 region (or one of the top-3 regions) is a 'relevant region',
then we deem the attention map as a successful hit." Implemented exactly: a cell is relevant when ONE
box covers more than half of it (`relevant_cells`; not the union of boxes), and the rate is over ALL
test scenes — a scene without any relevant cell cannot be hit and counts as a miss
(`scenes_without_relevant` says how many). The scenes are the test pairs' CTL-cropped scenes, each
asked with its pair's category; the boxes are the scene's other labeled products (the pair's own
product is cropped out).

Geometry. `other_boxes` are normalized (left, top, right, bottom) in the CTL-cropped scene. The model
sees the eval view of that scene: stretched to resize_size x resize_size (aspect ratio NOT kept), then
the central image_size square (pipeline.eval_view). A normalized coordinate v of the cropped scene is
at pixel v * R of the resized image and at (v * R - o) / S of the view, o = (R - S) // 2; the same
formula holds for x and y because the resize stretches both axes to R. The g x g grid of the
attention map tiles the view (row = y, column = x, like the conv4 map it is pooled from).

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


def box_coverage(boxes, grid: int) -> np.ndarray:
    """[k, g, g] fraction of each cell covered by each box (normalized view coordinates)."""
    scaled = np.asarray(boxes, np.float64).reshape(-1, 4) * grid
    edges = np.arange(grid, dtype=np.float64)
    # In grid units every cell is a unit square: overlap = overlap in x times overlap in y.
    ox = np.clip(np.minimum(scaled[:, 2:3], edges + 1) - np.maximum(scaled[:, 0:1], edges), 0, None)  # [k, g]
    oy = np.clip(np.minimum(scaled[:, 3:4], edges + 1) - np.maximum(scaled[:, 1:2], edges), 0, None)
    return oy[:, :, None] * ox[:, None, :]


def relevant_cells(boxes, grid: int) -> np.ndarray:
    """[g, g] bool: cells of which more than half is covered by some single box (the paper's rule)."""
    cover = box_coverage(boxes, grid)
    return (cover > 0.5).any(axis=0) if len(cover) else np.zeros((grid, grid), bool)


def topk_cells(maps: np.ndarray, k: int) -> np.ndarray:
    """[N, k] flat indices of each map's k largest cells (ties: the lower index first)."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    return np.argsort(-flat, axis=1, kind="stable")[:, :k]


def hit_rates(maps, relevant, ks: Sequence[int] = KS) -> dict:
    """{"top1", "top3", "scenes", "scenes_without_relevant"} for [N, g, g] maps and relevance masks;
    the rates are over all N scenes (one without a relevant cell is a miss)."""
    maps, relevant = np.asarray(maps), np.asarray(relevant, bool)
    if maps.shape != relevant.shape:
        raise ValueError(f"maps {maps.shape} and relevance masks {relevant.shape} differ in shape")
    if len(maps) == 0:
        raise ValueError("no scenes to score")
    flat = relevant.reshape(len(relevant), -1)
    out = {"scenes": len(flat), "scenes_without_relevant": int((~flat.any(axis=1)).sum())}
    for k in ks:
        hits = np.take_along_axis(flat, topk_cells(maps, k), axis=1).any(axis=1)
        out[f"top{k}"] = float(hits.mean())
    return out


def random_maps(num: int, grid: int, seed: int) -> np.ndarray:
    """[N, g, g] i.i.d. uniform scores: their ranking is a uniformly random permutation per scene."""
    return np.random.default_rng(seed).random((num, grid, grid))


def random_expected(relevant, ks: Sequence[int] = KS) -> dict:
    """Expected top-k hit rate of a uniformly random ranking over all scenes: mean of
    1 - C(n-r, k) / C(n, k) (0 for a scene with r = 0 relevant cells)."""
    flat = np.asarray(relevant, bool).reshape(len(relevant), -1)
    counts = flat.sum(axis=1)
    n = flat.shape[1]
    if len(counts) == 0:
        raise ValueError("no scenes to score")
    out = {}
    for k in ks:
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
