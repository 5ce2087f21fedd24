"""The shared harness of the benchmarks (run as `python benchmarks/NAME.py` from the repo root: this
directory is then on sys.path, and `run` puts the repo root there too).

Every script: absl flags at module level (a script is its own program), `main(argv)`, and
`if __name__ == "__main__": timing.run(main)`. `run` filters TensorFlow's start-up lines and drops
TF/Keras INFO records like the CLIs do. Time with `wall_times` / `median_ms` / `interleaved_times`
(medians; interleave variants so the load of this shared machine hits them alike), print the
`machine_line()` with the figures, and `summary()` for one variant's line.
Every script also takes `--smoke` (defined here): the tiny smoke config (`config()`) and tiny loop
sizes (`pick(full, tiny)`), so tests/test_benchmarks_smoke.py can run every script in seconds; its
figures mean nothing.
"""

import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `import timing` first: then `import ctl_keras` finds this checkout
    sys.path.insert(1, ROOT)


from absl import flags  # noqa: E402

flags.DEFINE_bool("smoke", False, "Tiny config and sizes (tests/test_benchmarks_smoke.py): checks that the "
                  "script runs; its figures mean nothing.")


def smoke() -> bool:
    return flags.FLAGS.smoke


def pick(full, tiny):
    """`full` normally, `tiny` under --smoke (call after flags are parsed: inside main)."""
    return tiny if smoke() else full


def config(**overrides):
    """The demo's synthetic Config (112 px, random backbone), or the smoke one under --smoke."""
    from ctl_keras.config import get_config

    return get_config("synthetic", smoke=smoke(), **overrides)


def run(main, argv=None) -> None:
    """absl's app.run(main) with the CLIs' logging set-up (ctl_keras.utils.logs)."""
    from absl import app

    from ctl_keras.utils import logs

    logs.quiet_tensorflow_startup()
    logs.quiet_library_info()
    app.run(main, argv)


def machine_line() -> str:
    """CPUs, their bf16-related flags and the 1-minute load average, to print next to every figure (the
    machine is shared; bfloat16 figures depend on the flags)."""
    from ctl_keras.utils.cpu_features import reported_cpu_flags

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({reported_cpu_flags()}), load {load:.1f}"


def summary(name: str, values, unit: str = "ms", scale: float = 1000.0) -> str:
    """`name  median unit (min .., max ..)` for seconds `values` (scale 1000: shown in ms)."""
    v = [x * scale for x in values]
    return f"  {name:24s} {statistics.median(v):9.3f} {unit} (min {min(v):.3f}, max {max(v):.3f}, n={len(v)})"


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
