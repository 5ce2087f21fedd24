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
