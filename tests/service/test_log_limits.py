"""Rate-limited log lines: the window's arithmetic, and a real asyncio server out of file descriptors
(its own process, `ulimit -n` 64) logging its failed accepts as a few lines instead of a traceback each."""

import logging
import socket
import subprocess
import sys
import time

import pytest

from ctl_keras.service.log_limits import RateLimited, RateLimitFilter

SERVER = """
import asyncio, logging, resource, sys
from ctl_keras.service.log_limits import install_loop_handler
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

async def main():
    install_loop_handler(asyncio.get_running_loop(), every=10.0)
    server = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(float(sys.argv[1]))

asyncio.run(main())
"""


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_window_writes_one_line_per_period_with_the_count(caplog):
    """Keys are limited apart; a held-back line is counted into the next one written."""
    clock, logger = Clock(), logging.getLogger("test_log_limits")
    limited = RateLimited(logger, every=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test_log_limits"):
        written = [limited("a", "accept failed") for _ in range(1000)]
        assert limited("b", "other")
        clock.now = 9.9
        assert not limited("a", "accept failed")
        clock.now = 10.5
        assert limited("a", "accept failed")
    assert written.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "accept failed", "other", "accept failed (1000 more like it in the last 10 s)"]


def test_filter_limits_records_by_template():
    clock = Clock()
    limit = RateLimitFilter(every=5.0, clock=clock)
    records = [logging.LogRecord("uvicorn.error", logging.WARNING, "", 0, "Invalid HTTP request received.", (), None)
               for _ in range(50)]
    assert [limit.filter(r) for r in records[:3]] == [True, False, False]
    clock.now = 6.0
    assert limit.filter(records[3]) and records[3].getMessage().endswith("(2 more like it in the last 6 s)")


@pytest.mark.slow
def test_accepts_out_of_descriptors_log_a_few_lines(tmp_path):
    """300 connections against a server allowed 64 descriptors: asyncio logged a traceback per failed
    accept (backlog times per wake-up); here at most one line per 10 s, no traceback."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    port = int(proc.stdout.readline())
    clients = []
    for _ in range(300):
        try:
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    time.sleep(2.5)
    for sock in clients:
        sock.close()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-2000:]
    lines = stderr.splitlines()
    assert 1 <= len(lines) <= 2 and "Traceback" not in stderr, stderr[-3000:]
    assert "cannot accept connections: [Errno 24] Too many open files" in lines[0]
