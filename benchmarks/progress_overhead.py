"""What one progress update costs the job that reports it: ctl_keras.progress vs the Keras Progbar
that training and the feature cache used before.

    python benchmarks/progress_overhead.py [--calls=20000] [--reps=5]

Per update, microseconds (median over --reps runs of --calls updates each, CPU time of this thread):
- log mode (stderr not a terminal: no output until ~10 s pass; the clock is read per update),
- bar mode on a real pseudo-terminal (tqdm redraws at most every 0.2 s; a thread drains the pty),
- keras.utils.Progbar.update(i, [("loss", x)]) on the same pty (the old per-step call of run_epoch).
The training loop updates once per tf.function call (every steps_per_execution steps), so these
costs are per call, not per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _drain(fd):
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def _time(fn, calls: int) -> float:
    start = time.thread_time()
    fn(calls)
    return (time.thread_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tests/test_benchmarks_smoke.py (sizes come from the flags)")
    args = parser.parse_args()
    import keras

    from ctl_keras import progress

    master, slave = os.openpty()
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    tty = os.fdopen(slave, "w")

    def log_mode(n):
        with progress.Progress(total=n, mode="log", log=lambda line: None) as bar:
            for _ in range(n):
                bar.update(1, loss=0.5)

    def bar_mode(n):
        with progress.Progress(total=n, file=tty, desc="bench", unit="step") as bar:
            for _ in range(n):
                bar.update(1, loss=0.5)

    def progbar(n):
        sys_stdout, sys.stdout = sys.stdout, tty  # Progbar writes to sys.stdout
        try:
            bar = keras.utils.Progbar(n, stateful_metrics=["loss"])
            for i in range(1, n + 1):
                bar.update(i, [("loss", 0.5)])
        finally:
            sys.stdout = sys_stdout

    for name, fn in (("progress log mode", log_mode), ("progress bar mode (pty)", bar_mode),
                     ("keras Progbar (pty)", progbar)):
        times = [_time(fn, args.calls) for _ in range(args.reps)]
        print(f"{name:<26} {statistics.median(times):7.2f} us/update  (runs: "
              + ", ".join(f"{t:.2f}" for t in times) + ")", flush=True)


if __name__ == "__main__":
    main()
