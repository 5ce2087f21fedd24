"""The one timing helper of the benchmarks (run as `python benchmarks/NAME.py`: this directory is on sys.path)."""

import statistics
import time


def wall_times(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Wall seconds of `repeats` calls of `fn()`, after `warmup` untimed calls (tracing, caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in ms over `repeats` calls, after `warmup` untimed calls."""
    return 1000 * statistics.median(wall_times(fn, repeats, warmup))


def interleaved_times(variants: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """{name: wall seconds of each of `repeats` rounds}: every round calls each `fn()` of `variants` once,
    in order, so that load on a shared machine hits every variant alike; `warmup` untimed rounds first."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times
