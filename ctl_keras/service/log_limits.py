"""Rate-limited log lines for events a hostile client can repeat at will.

Out of file descriptors, asyncio's accept loop reports every failed accept() through the event
loop's exception handler, with a traceback, up to `backlog` times per wake-up and again every
second: 211 MB of log in 40 s under 1,100 idle connections. Here such events are one line per key
at most every `every` seconds, carrying how many were held back since the last line.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("ctl_keras.serve")

ACCEPT_ERROR = "socket.accept() out of system resource"


class Window:
    """admit(key): "" or " (N more like it in the last S s)" when a line of `key` may be written now,
    None while it is held back (less than `every` seconds after the last written one)."""

    def __init__(self, every: float = 10.0, clock=time.monotonic):
        self.every, self.clock = every, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> str | None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.every:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last[key] = now
            held = self._held.pop(key, 0)
        return f" ({held} more like it in the last {now - last:.0f} s)" if held else ""


class RateLimited:
    """limited(key, message): the message logged when the key's window admits it (its count appended)."""

    def __init__(self, logger: logging.Logger, every: float = 10.0, clock=time.monotonic):
        self.logger, self.window = logger, Window(every, clock)

    def __call__(self, key: str, message: str, level: int = logging.WARNING) -> bool:
        suffix = self.window.admit(key)
        if suffix is None:
            return False
        self.logger.log(level, message + suffix)
        return True


def install_loop_handler(loop, metrics=None, every: float = 10.0) -> RateLimited:
    """Every exception the event loop itself reports (failed accepts above all) as rate-limited
    one-line warnings, keyed by message and exception type; no traceback."""
    limited = RateLimited(log, every)

    def handler(loop, context):
        message = context.get("message") or "event loop error"
        error = context.get("exception")
        key = f"{message}|{type(error).__name__}"
        if message == ACCEPT_ERROR:
            if metrics is not None:
                metrics.accept_errors.inc()
            message = (f"cannot accept connections: {error}; raise `ulimit -n` or lower --max_connections "
                       "(the default cap stays below the descriptor limit)")
        elif error is not None:
            message = f"event loop: {message}: {type(error).__name__}: {error}"
        limited(key, " ".join(message.split()))

    loop.set_exception_handler(handler)
    return limited


class RateLimitFilter(logging.Filter):
    """Records with the same message template pass at most once per `every` seconds (e.g. uvicorn's
    "Invalid HTTP request received." for every garbage request), the held-back count appended."""

    def __init__(self, every: float = 10.0, clock=time.monotonic):
        super().__init__()
        self.window = Window(every, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        suffix = self.window.admit(str(record.msg))
        if suffix is None:
            return False
        if suffix:
            record.msg = f"{record.msg}{suffix}"
        return True
