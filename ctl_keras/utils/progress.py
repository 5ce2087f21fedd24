"""Progress of long jobs: a tqdm bar (count, rate, ETA) on a terminal, one log line per ~10 s otherwise.

Every long job (download, feature cache, training epochs, evaluate, experiments, `recommend index`)
reports through this module, so they all look and behave alike:

    from ctl_keras.utils import progress

    with progress.Progress(total=len(jobs), desc="download", unit="image") as bar:
        for job in jobs:
            ...
            bar.update(1, ok=ok, failed=failed)      # keyword arguments become the postfix

    for batch in progress.iterate(batches, total=n, desc="embed", unit="batch"):
        ...

`Progress(total=None, desc="", unit="it", *, file=None, mode=None, log_every=10.0, clock=time.monotonic,
log=None, final=True, initial=0)` (`initial`: units already done, e.g. epochs of a resumed run; the rate
counts only this run's):
- mode "bar": a tqdm bar on `file` (default sys.stderr) with count/total, percentage, elapsed<ETA and
  rate; nested bars (experiments > training > epoch) stack as tqdm stacks them. While a bar is open,
  absl log lines are written above it (tqdm's external write mode) instead of through it.
- mode "log": no bar and no carriage returns; `log(line)` (default absl `logging.info`) at most once
  per `log_every` seconds of `clock`, and one last line at `close()` (unless `final=False`, or the
  last line already showed the final count). The
  line is tqdm's own meter text without the bar: `download:  24% 120/500 [00:10<00:31, 12.00image/s, ok=118]`.
- mode "off": nothing.
- default mode: "bar" when `file` is a terminal, else "log"; the environment variable
  CTL_PROGRESS=bar|log|off overrides it (e.g. `CTL_PROGRESS=off` in scripts that parse stderr).
- `update(n=1, **postfix)` is thread-safe (the download workers share one bar); `set_total(total)`
  and `add_total(n)` for jobs that learn their size late; `close()` is idempotent and runs on `with` exit, also after
  an exception (an interrupted job leaves its last line, not a half-drawn bar).
- `ticker()`: a picklable callable `tick(n)` (and `tick.add_total(n)`) that updates this Progress when
  called in the process that created it and does nothing in any other process. For code that is pickled and run by an
  engine (Apache Beam DoFns / RunInference handlers): the in-process runner shows real progress,
  remote or multi-process workers simply do not report (their runner has its own UI).

For the dataset build (build_dataset, not wired here): one Progress per stage the user waits on,
e.g. `Progress(total=None, desc="build: pairs read", unit="pair")` updated as the reader yields and
`Progress(total=n_images, desc="build: images encoded", unit="image")`, updated from the Beam stages
through `bar.ticker()` (the FnApiRunner runs them in this process).

`write(text, file=sys.stdout)` prints a line without breaking open bars (experiments' per-method lines).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
import weakref
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

MODES = ("bar", "log", "off")
ENV = "CTL_PROGRESS"
LOG_EVERY = 10.0  # seconds between two log lines when stderr is not a terminal

# id -> open Progress of this process (for ticker()); weak, so a dropped Progress is collected and closed.
_ACTIVE: "weakref.WeakValueDictionary[int, Progress]" = weakref.WeakValueDictionary()
_IDS = itertools.count(1)
_REGISTRY_LOCK = threading.Lock()


def _is_tty(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # closed or not a real file
        return False


def _width(file) -> dict:
    """tqdm follows the terminal's size; a terminal that reports 0 x 0 (a bare pty, `script`) gets
    100 x 24, where tqdm would draw nothing."""
    try:
        size = os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    return {"dynamic_ncols": True} if size.columns > 0 and size.lines > 0 else {"ncols": 100, "nrows": 24}


def choose_mode(file=None, mode: str | None = None) -> str:
    """`mode` if given, else $CTL_PROGRESS, else "bar" on a terminal and "log" elsewhere."""
    mode = mode or os.environ.get(ENV) or ("bar" if _is_tty(file if file is not None else sys.stderr) else "log")
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)} (${ENV}), got {mode!r}")
    return mode


def _default_log(line: str) -> None:
    from absl import logging

    if not _skipping:  # absl names the caller of the job, not this module, as the line's source
        for name in ("_default_log", "_emit", "update", "close", "__exit__", "__del__", "__call__", "iterate"):
            logging.ABSLLogger.register_frame_to_skip(__file__, name)
        _skipping.append(True)
    logging.info("%s", line)


_skipping: list = []


class _AboveBars:
    """A stream wrapper for absl's handler: each write is made in tqdm's external write mode, which
    clears the open bars, writes, and redraws them (so log lines never land inside a bar)."""

    def __init__(self, inner):
        self.inner = inner

    def write(self, text):
        with tqdm.external_write_mode(file=self.inner):
            return self.inner.write(text)

    def flush(self):
        return self.inner.flush()

    def __eq__(self, other):  # absl compares its stream with sys.stderr (to avoid writing twice)
        return other is self or other == self.inner

    def __hash__(self):
        return hash(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)


_bars_open = 0


def _route_logs(opening: bool) -> None:
    """First bar opened: absl's stream goes through _AboveBars; last bar closed: back as it was."""
    with _REGISTRY_LOCK:
        _route_logs_locked(opening)


def _route_logs_locked(opening: bool) -> None:
    global _bars_open
    try:
        from absl import logging as absl_logging

        handler = absl_logging.get_absl_handler().python_handler
    except Exception:  # noqa: BLE001 (no absl handler: nothing to route)
        return
    _bars_open += 1 if opening else -1
    stream = handler.stream
    if opening and _bars_open == 1 and not isinstance(stream, _AboveBars):
        handler.stream = _AboveBars(stream)
    elif not opening and _bars_open == 0 and isinstance(stream, _AboveBars):
        handler.stream = stream.inner


class Progress:
    """One job's progress; see the module docstring."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", *, file=None,
                 mode: str | None = None, log_every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] | None = None, final: bool = True, initial: int = 0):
        if log_every <= 0:
            raise ValueError(f"log_every must be > 0 seconds, got {log_every}")
        self.file = file if file is not None else sys.stderr
        self.mode = choose_mode(self.file, mode)
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.initial, self.postfix = initial, initial, {}
        self.log_every, self.clock, self.final = log_every, clock, final
        self.log = log or _default_log
        self.lines = 0  # log lines written (mode "log")
        self._lock = threading.Lock()
        self._start = self._last = clock()
        self._closed = False
        self._logged_n: int | None = None  # n at the last log line
        self._bar = None
        if self.mode == "bar":
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, initial=initial,
                             mininterval=0.2, smoothing=0.1, **_width(self.file))
            _route_logs(opening=True)
        self._id = next(_IDS)
        with _REGISTRY_LOCK:
            _ACTIVE[self._id] = self

    # ------------------------------------------------------------ reporting
    def update(self, n: int = 1, **postfix) -> None:
        with self._lock:
            if self._closed:
                return
            self.n += n
            if postfix:
                self.postfix.update(postfix)
            if self._bar is not None:
                if postfix:
                    self._bar.set_postfix_str(self._postfix_text(), refresh=False)
                self._bar.update(n)
            elif self.mode == "log":
                now = self.clock()
                if now - self._last >= self.log_every:
                    self._last = now
                    self._emit(now)

    def add_total(self, n: int) -> None:
        """Grow the total by n (a job that discovers its work as it reads it)."""
        self.set_total((self.total or 0) + n)

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def line(self, now: float | None = None) -> str:
        """The log line: tqdm's meter text without the bar."""
        elapsed = (self.clock() if now is None else now) - self._start
        return tqdm.format_meter(self.n, self.total, elapsed, ncols=0, prefix=self.desc, unit=self.unit,
                                 postfix=self._postfix_text() or None, initial=self.initial)

    def _postfix_text(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.postfix.items())

    def _emit(self, now: float) -> None:
        self.lines += 1
        self._logged_n = self.n
        self.log(self.line(now))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                _route_logs(opening=False)
            elif self.mode == "log" and self.final and self._logged_n != self.n:  # not the last line again
                self._emit(self.clock())
        with _REGISTRY_LOCK:
            _ACTIVE.pop(self._id, None)

    def __del__(self):  # a Progress dropped without close() (an exception) still restores the log stream
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ticker(self) -> "Ticker":
        return Ticker(self._id, os.getpid())


class Ticker:
    """`tick(n=1)`: Progress.update(n) in the process that made it; a no-op in any other (pickled copies)."""

    def __init__(self, progress_id: int, pid: int):
        self.progress_id, self.pid = progress_id, pid

    def __call__(self, n: int = 1, **postfix) -> None:
        if os.getpid() != self.pid:
            return
        with _REGISTRY_LOCK:
            target = _ACTIVE.get(self.progress_id)
        if target is not None:
            target.update(n, **postfix)

    def add_total(self, n: int) -> None:
        """Progress.add_total(n), under the same rule as a call."""
        if os.getpid() == self.pid:
            with _REGISTRY_LOCK:
                target = _ACTIVE.get(self.progress_id)
            if target is not None:
                target.add_total(n)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def iterate(iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it", **kwargs) -> Iterator:
    """Yield from `iterable`, one update per item (Progress's keyword arguments pass through)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total=total, desc=desc, unit=unit, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update(1)


def write(text: str, file=None) -> None:
    """Print one line without breaking open bars (tqdm clears and redraws them)."""
    file = file if file is not None else sys.stdout
    with contextlib.suppress(ValueError):  # a closed stream at interpreter exit
        tqdm.write(text, file=file)
        file.flush()
