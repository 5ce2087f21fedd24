"""`build_dataset --dry_run`: what a build would keep, per category, before any image is encoded.

Only the pairs file is read (and the scene images' headers where boxes are in pixels); local images
are looked for (a stat each, no decode) so that a table whose ids do not name its files says so
before the build, with the first path looked for. Images are otherwise assumed readable, so a real
build may drop a few more pairs as missing_image / corrupt_image, which the manifest then counts
under the same per-category keys (`pairs_by_category`).
"""

from __future__ import annotations

import os


def not_found(paths: list[str]) -> list[str]:
    """The local paths of `paths` that are not files, sorted (remote ones are not looked up)."""
    return sorted(p for p in paths if "://" not in p and not os.path.isfile(p))


def summary_lines(read: dict) -> list[str]:
    """The dry-run table of a `build_dataset.read_pairs` result, one line per category."""
    spec, plan, skipped = read["spec"], read["plan"], read["skipped"]
    by_category = plan["by_category"]
    width = max([len("category")] + [len(name) for name in by_category])
    missing = not_found(read["paths"])
    head = f"{spec.name}: {plan['pairs_in']} rows; {len(read['paths'])} images to check and encode"
    if missing:
        head += f" ({len(missing)} not found; the first looked for: {missing[0]})"
    lines = [head,
             f"{'category':<{width}}  {'rows':>8}  {'kept':>8}  dropped"]
    for name, counts in by_category.items():
        dropped = ", ".join(f"{reason} {n}" for reason, n in counts["dropped"].items()) or "-"
        lines.append(f"{name:<{width}}  {counts['rows']:>8}  {counts['kept']:>8}  {dropped}")
    labels = {r: plan["dropped"][r] for r in ("unknown_category", "dropped_category") if plan["dropped"].get(r)}
    unread = {r: n for r, n in sorted(skipped.items()) if n}
    if labels:
        lines.append("not a category: " + ", ".join(f"{r} {n}" for r, n in labels.items()))
    if unread:
        lines.append("rows not read: " + ", ".join(f"{r} {n}" for r, n in unread.items()))
    kept = sum(c["kept"] for c in by_category.values())
    lines.append(f"total: {kept} pairs survive the CTL crop (before the image check)")
    return lines
