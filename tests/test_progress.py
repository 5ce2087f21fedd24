"""ctl_keras.utils.progress: real tqdm output on a real pseudo-terminal vs a pipe, and the log cadence on an
injected clock (hand-worked times and meter text)."""

import fcntl
import os
import pickle
import struct
import termios
import threading

import pytest
from absl import logging as absl_logging

from ctl_keras.utils import progress


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)


def _read_all(fd) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # a pty's master raises EIO once the other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_terminal_gets_a_tqdm_bar_with_rate_and_eta():
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows x 120 columns
    lines = []
    with os.fdopen(slave, "w") as tty:
        assert tty.isatty()
        with progress.Progress(total=40, desc="download", unit="image", file=tty, log=lines.append) as bar:
            assert bar.mode == "bar"
            for i in range(40):
                bar.update(1, ok=i + 1)
    out = _read_all(master).decode("utf-8", "replace")
    os.close(master)
    assert lines == []  # a terminal gets the bar, not log lines
    assert "\r" in out  # redrawn in place
    last = out.replace("\r\n", "\n").split("\r")[-1]
    assert last.startswith("download: 100%|") and "| 40/40 [" in last
    assert "image/s" in last and "ok=40" in last and "<00:00" in last  # rate, postfix, elapsed<ETA
    assert "█" in last


def test_pipe_gets_no_bar_only_log_lines():
    read_end, write_end = os.pipe()
    lines = []
    clock = Clock()
    with os.fdopen(write_end, "w") as pipe:
        with progress.Progress(total=4, desc="job", unit="image", file=pipe, clock=clock, log=lines.append) as bar:
            assert bar.mode == "log"
            for _ in range(4):
                clock.now += 1
                bar.update(1)
    assert _read_all(read_end) == b""  # nothing on the stream itself: no \r, no bar
    os.close(read_end)
    # One final line (4 s < 10 s: none before it): tqdm's meter without the bar, 4 images in 4 s.
    assert lines == ["job: 100% 4/4 [00:04<00:00,  1.00image/s]"]


def test_log_cadence_is_one_line_per_ten_seconds_with_eta():
    """100 images, one per second: lines at t = 10, 20, 30 (each update after 10 s since the last
    line), then the final one at close (t = 35); at t = 10, 10/100 done at 1/s leaves 90 s."""
    clock, lines = Clock(), []
    bar = progress.Progress(total=100, desc="cache", unit="image", mode="log", clock=clock, log=lines.append)
    for _ in range(35):
        clock.now += 1
        bar.update(1)
    bar.close()
    bar.close()  # idempotent
    assert lines == ["cache:  10% 10/100 [00:10<01:30,  1.00image/s]",
                     "cache:  20% 20/100 [00:20<01:20,  1.00image/s]",
                     "cache:  30% 30/100 [00:30<01:10,  1.00image/s]",
                     "cache:  35% 35/100 [00:35<01:05,  1.00image/s]"]


def test_uneven_updates_and_resumed_initial():
    """Resumed at 4 of 10 epochs: the rate counts only this run's 3 epochs in 30 s (tqdm writes 10 s/epoch), ETA 30 s;
    a burst of updates inside 10 s gives no extra line."""
    clock, lines = Clock(), []
    bar = progress.Progress(total=10, desc="train", unit="epoch", mode="log", clock=clock, log=lines.append,
                            initial=4)
    for t in (3, 4, 5):
        clock.now = t
        bar.update(0)
    clock.now = 30
    bar.update(3, loss=0.12345)
    bar.close()
    assert lines[0] == "train:  70% 7/10 [00:30<00:30, 10.00s/epoch, loss=0.1235]"
    assert len(lines) == 1  # close adds no line: the last one already shows the final count


def test_final_line_can_be_off_and_mode_off_is_silent():
    clock, lines = Clock(), []
    with progress.Progress(total=2, mode="log", clock=clock, log=lines.append, final=False) as bar:
        bar.update(2)
    with progress.Progress(total=2, mode="off", clock=clock, log=lines.append) as bar:
        clock.now = 99
        bar.update(2)
    assert lines == []


def test_env_overrides_the_tty_check_and_bad_values_are_one_line(monkeypatch):
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as pipe:
        monkeypatch.setenv(progress.ENV, "off")
        assert progress.choose_mode(pipe) == "off"
        monkeypatch.setenv(progress.ENV, "loud")
        with pytest.raises(ValueError, match=r"one of bar, log, off \(\$CTL_PROGRESS\), got 'loud'"):
            progress.Progress(file=pipe)
    os.close(read_end)


def test_updates_from_threads_all_count():
    lines = []
    bar = progress.Progress(total=8000, mode="log", log=lines.append)
    threads = [threading.Thread(target=lambda: [bar.update(1) for _ in range(1000)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    assert bar.n == 8000 and "8000/8000" in lines[-1]


def test_ticker_reports_in_its_process_only():
    lines = []
    with progress.Progress(mode="log", log=lines.append) as bar:
        tick = pickle.loads(pickle.dumps(bar.ticker()))  # as Beam ships it to its in-process workers
        tick.add_total(5)
        tick(3)
        progress.Ticker(tick.progress_id, os.getpid() + 1)(100)  # "another process": ignored
        assert (bar.n, bar.total) == (3, 5)
    tick(1)  # after close: nothing to update, no error
    assert bar.n == 3 and "3/5" in lines[-1]


def test_absl_lines_go_above_an_open_bar_and_the_stream_is_restored():
    handler = absl_logging.get_absl_handler().python_handler
    before = handler.stream
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        with progress.Progress(total=2, file=tty) as outer, progress.Progress(total=2, file=tty):
            assert isinstance(handler.stream, progress._AboveBars)
            assert handler.stream == before  # absl's "stream != sys.stderr" check still sees stderr
            outer.update(1)
        assert handler.stream is before
    os.close(master)


def test_iterate_counts_items():
    lines = []
    assert list(progress.iterate(range(3), desc="x", mode="log", log=lines.append)) == [0, 1, 2]
    assert "3/3" in lines[-1]


def test_default_log_line_names_the_job_not_this_module(caplog):
    """absl prints the source file of each line: it must be the job's (here this test), not progress.py."""
    import logging

    old = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger="absl"):
            with progress.Progress(total=1, desc="named", mode="log") as bar:
                bar.update(1)
    finally:
        absl_logging.set_verbosity(old)
    records = [r for r in caplog.records if "named: 100% 1/1" in r.getMessage()]
    assert len(records) == 1 and records[0].filename == "test_progress.py"
