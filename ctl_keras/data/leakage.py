"""Leakage between splits, counted: shared products and near-duplicate scenes.

The split is by scene, so no scene is in two splits, but two things can still leak:
- a test pair's positive product also occurs in a train pair (the same catalog item), and
- a test scene is a near-duplicate of a train scene: on Pinterest the same photo is repinned under
  another id. Near-duplicates are found with a perceptual hash of the FULL scene image, dHash
  (imagehash.dhash, 8x8 = 64 bits: the sign of horizontal gradients of a 9x8 grayscale thumbnail),
  and a Hamming distance of at most NEAR_DUPLICATE_BITS.

`count_leakage` gives the manifest's "leakage" entry; `duplicate_scenes` the scenes that
`build_dataset --dedupe_scenes` drops BEFORE the split (every scene of a near-duplicate group but its
smallest id). Candidate pairs come from band buckets (split the 64 bits into NEAR_DUPLICATE_BITS + 1
bands: two hashes within that distance agree exactly on at least one band, by pigeonhole), so the
search is not all-pairs on a large dataset; every candidate is checked on the full distance.
"""

from __future__ import annotations

import collections
import io
from typing import Callable, Iterable

import numpy as np

HASH_SIZE = 8  # dHash bits = HASH_SIZE ** 2 = 64
NEAR_DUPLICATE_BITS = 4  # Hamming distance at or below which two scenes are near-duplicates


def dhash(data: bytes) -> int:
    """64-bit dHash of an encoded image (imagehash.dhash on the RGB image)."""
    import imagehash  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    with Image.open(io.BytesIO(data)) as image:
        bits = imagehash.dhash(image.convert("RGB"), hash_size=HASH_SIZE).hash.reshape(-1)
    return int("".join("1" if b else "0" for b in bits), 2)


def scene_hashes(paths: dict, read: Callable[[str], bytes]) -> dict[str, int]:
    """{scene_id: dHash} of each scene's image (`paths`: scene_id -> path, `read`: path -> bytes)."""
    return {scene: dhash(read(path)) for scene, path in sorted(paths.items())}


def _bands(value: int, bands: int, bits: int = HASH_SIZE ** 2) -> list[tuple[int, int]]:
    edges = np.linspace(0, bits, bands + 1).astype(int)
    return [(i, (value >> int(lo)) & ((1 << int(hi - lo)) - 1)) for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]


def near_duplicate_pairs(hashes: dict[str, int], max_bits: int = NEAR_DUPLICATE_BITS) -> list[tuple[str, str]]:
    """Sorted (a, b) scene pairs, a < b, whose hashes differ in at most `max_bits` bits."""
    if max_bits < 0 or max_bits >= HASH_SIZE ** 2:
        raise ValueError(f"max_bits {max_bits} must be in [0, {HASH_SIZE ** 2})")
    buckets: dict = collections.defaultdict(list)
    for scene, value in hashes.items():
        for key in _bands(value, max_bits + 1):
            buckets[key].append(scene)
    found = set()
    for members in buckets.values():
        members = sorted(members)
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if bin(hashes[a] ^ hashes[b]).count("1") <= max_bits:
                    found.add((a, b))
    return sorted(found)


def duplicate_scenes(hashes: dict[str, int], max_bits: int = NEAR_DUPLICATE_BITS) -> dict[str, str]:
    """{dropped scene: the kept scene of its group}: near-duplicate groups (connected by pairs), each
    keeping its smallest scene id."""
    parent = {s: s for s in hashes}

    def root(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for a, b in near_duplicate_pairs(hashes, max_bits):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {s: root(s) for s in sorted(hashes) if root(s) != s}


def count_leakage(split_pairs: dict[str, Iterable[dict]], hashes: dict[str, int],
                  max_bits: int = NEAR_DUPLICATE_BITS) -> dict:
    """The manifest's "leakage": for val and test, how many pairs' positives (and distinct products) also
    occur in train, and how many scenes are near-duplicates of a train scene (dHash)."""
    pairs = {split: list(p) for split, p in split_pairs.items()}
    train_products = {p["product_id"] for p in pairs.get("train", [])}
    scenes = {split: sorted({p["scene_id"] for p in ps}) for split, ps in pairs.items()}
    train_scenes = set(scenes.get("train", []))
    near = collections.defaultdict(set)
    for a, b in near_duplicate_pairs({s: hashes[s] for ps in scenes.values() for s in ps}, max_bits):
        near[a].add(b)
        near[b].add(a)
    out = {"hash": f"imagehash.dhash, {HASH_SIZE ** 2} bits, full scene image",
           "near_duplicate_max_bits": max_bits}
    for split in ("val", "test"):
        ps = pairs.get(split, [])
        out[split] = {
            "pairs": len(ps),
            "positives_in_train": sum(p["product_id"] in train_products for p in ps),
            "products": len({p["product_id"] for p in ps}),
            "products_in_train": len({p["product_id"] for p in ps} & train_products),
            "scenes": len(scenes.get(split, [])),
            "scenes_near_duplicate_of_train": sum(bool(near[s] & train_scenes) for s in scenes.get(split, [])),
        }
    return out
