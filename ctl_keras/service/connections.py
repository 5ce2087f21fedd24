"""Connection bounds uvicorn lacks, as its own h11 protocol class (uvicorn.Config(http=...)).

uvicorn closes idle kept-alive connections (timeout_keep_alive) but times neither a request's head
nor its body, and does not cap open connections: a client that sends half a request and stops holds
its socket forever, and enough of them exhaust the process's file descriptors. (Its
limit_concurrency answers 503 only once a whole head has arrived and counts idle sockets too, so it
cannot stop them.) Like nginx, this adds:
- head timeout: the request line and headers within `head_timeout` s of the connection (or of the
  previous answer on a kept-alive one); 408 if any of it came, else a plain close;
- body timeout: the whole body within `body_timeout` s of its head; 408 and close;
- a cap: at `max_connections`, a new connection first evicts the oldest one holding no request
  (waiting for a head, or lingering); when every one is busy it is refused, 503 + Retry-After;
- lingering close: an answer sent before the body was read (413, 401, ...) is followed by reading
  and discarding the rest for up to `linger_seconds`, so a client that writes its whole body before
  reading (urllib, requests) gets the answer instead of a connection reset;
- on shutdown, a request still receiving its body is answered 503 and closed at once (it never
  reached the model); the drain waits only for requests being answered.
A request the server cut short reaches the app as a disconnect with `state.closed_by_server` set to
the status sent, so the app counts that status rather than a client hang-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD, BODY, BUSY, LINGER = "head", "body", "busy", "linger"
_ANSWERED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)


@dataclass
class Limits:
    max_connections: int
    head_timeout: float
    body_timeout: float
    linger_seconds: float
    metrics: object

    def __post_init__(self):
        self.open: dict = {}  # insertion order = age: eviction takes the oldest idle one

    def admit(self, conn) -> bool:
        """Registers `conn`; False when it must be refused (at the cap and nothing to evict)."""
        while len(self.open) >= self.max_connections and self._evict_one():
            pass
        room = len(self.open) < self.max_connections  # refused ones linger over it: at most cap + 1 open
        self.open[conn] = None
        self.metrics.open_connections.set(len(self.open))
        return room

    def leave(self, conn) -> None:
        self.open.pop(conn, None)
        self.metrics.open_connections.set(len(self.open))

    def closed(self, reason: str) -> None:
        self.metrics.connections_closed.labels(reason=reason).inc()

    def _evict_one(self) -> bool:
        lingering = next((c for c in self.open if c.phase == LINGER), None)  # already answered: dropped first
        victim = lingering or next((c for c in self.open if c.phase == HEAD), None)
        if victim is None:
            return False
        self.closed("evicted")
        victim.close_now()
        return True


def raw_answer(status: int, message: str, headers: tuple[str, ...] = ()) -> bytes:
    """A whole HTTP/1.1 answer with a JSON {"error": message} body, closing the connection."""
    body = json.dumps({"error": message}).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Transport:
    """The transport as uvicorn sees it: close() lingers while the client is still sending a body."""

    def __init__(self, real, owner):
        self._real, self._owner = real, owner

    def __getattr__(self, name):
        return getattr(self._real, name)

    def close(self):
        self._owner.close_gracefully()

    def write(self, data):
        if not self._owner.lingering:  # after write_eof, a late write would raise
            self._real.write(data)


def protocol_class(limits: Limits) -> type:
    class BoundedH11Protocol(H11Protocol):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.phase, self.lingering = HEAD, False
            self._real = self._timer = None
            self._head_bytes, self._lost, self._stopping = 0, False, False

        # ---- asyncio.Protocol
        def connection_made(self, transport):
            self._real = transport
            super().connection_made(_Transport(transport, self))
            if not limits.admit(self):
                limits.closed("refused")
                transport.write(raw_answer(503, f"server at its connection limit (--max_connections="
                                                f"{limits.max_connections}); retry later", ("retry-after: 1",)))
                self._linger()
                return
            self._enter(HEAD)

        def connection_lost(self, exc):
            self._lost = True
            self._cancel()
            limits.leave(self)
            super().connection_lost(exc)

        def data_received(self, data):
            if self.lingering:
                return  # read and dropped: the answer is already sent
            if self.phase == HEAD:
                self._head_bytes += len(data)
            super().data_received(data)
            self._update()

        def on_response_complete(self):
            super().on_response_complete()
            self._update()

        def shutdown(self):
            self._stopping = True
            if self.phase == BODY:  # never reached the model: answered now, not waited for
                limits.closed("shutdown")
                self._cut_short(503, "server shutting down; retry", ("retry-after: 1",))
                self._real.close()
            elif self.phase == LINGER:
                self._real.close()
            else:
                super().shutdown()

        # ---- phases
        def _update(self):
            if self.lingering or self._lost:
                return
            theirs = self.conn.their_state
            if theirs is h11.IDLE:
                phase = HEAD
            elif theirs is h11.SEND_BODY:
                phase = LINGER if self.conn.our_state in _ANSWERED else BODY
            else:
                phase = BUSY
            if phase != self.phase:
                self._enter(phase)

        def _enter(self, phase):
            self._cancel()
            self.phase = phase
            if phase == HEAD:
                self._head_bytes = 0
                self._timer = self.loop.call_later(limits.head_timeout, self._head_expired)
            elif phase == BODY:
                self._timer = self.loop.call_later(limits.body_timeout, self._body_expired)
            elif phase == LINGER:
                self._timer = self.loop.call_later(limits.linger_seconds, self._linger_expired)

        def _cancel(self):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _head_expired(self):
            limits.closed("head_timeout")
            if self._head_bytes:
                self._real.write(raw_answer(408, f"request head not complete within --head_timeout="
                                                 f"{limits.head_timeout:g} s"))
            self._real.close()

        def _body_expired(self):
            limits.closed("body_timeout")
            self._cut_short(408, f"request body not complete within --body_timeout={limits.body_timeout:g} s")
            self._linger()

        def _linger_expired(self):
            limits.closed("linger_timeout")
            self._real.close()

        def _cut_short(self, status, message, headers=()):
            """Answer `status` in place of the app, whose receive() now returns a disconnect."""
            cycle = self.cycle
            if cycle is None or cycle.response_started or cycle.response_complete:
                return
            cycle.scope["state"]["closed_by_server"] = status
            cycle.disconnected = True
            cycle.message_event.set()
            self._real.write(raw_answer(status, message, headers))

        # ---- closing
        def _linger(self):
            """Send what is queued, then FIN; read and drop until the client closes or linger_seconds."""
            if self.lingering:
                return
            self.lingering = True
            self._enter(LINGER)
            self._real.resume_reading()
            if self._real.can_write_eof():
                self._real.write_eof()

        def close_gracefully(self):
            """uvicorn's close: lingers while the client is still sending a body we answered early."""
            if self.lingering:
                return  # the linger timer or the client's own close ends it
            if not (self._lost or self._stopping) and self.conn.their_state is h11.SEND_BODY:
                self._linger()
            else:
                self._real.close()

        def close_now(self):
            limits.leave(self)
            self._cancel()
            self._real.close()

    return BoundedH11Protocol
