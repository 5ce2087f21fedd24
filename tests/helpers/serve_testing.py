"""Real server processes of ctl_keras.serve on free loopback ports, and plain HTTP calls to them."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, data=None, headers=None, method=None, timeout=60):
    """(status, headers, body bytes) of one HTTP request; never raises on an HTTP error status."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


class Server:
    """`ctl serve ...` in its own process, ready when /readyz says so."""

    def __init__(self, *args, log_path, preexec_fn=None, cwd=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ctl_keras.serve", f"--port={self.port}", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=ENV, preexec_fn=preexec_fn,
                                     cwd=cwd)
        end = time.monotonic() + 240
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {open(log_path).read()[-3000:]}")
            try:
                if call(self.url + "/readyz", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server not ready in 240 s: {open(log_path).read()[-3000:]}")

    def post(self, path, data, content_type="image/jpeg", headers=None, timeout=60):
        status, h, body = call(self.url + path, data, dict({"Content-Type": content_type}, **(headers or {})),
                               method="POST", timeout=timeout)
        return status, h, json.loads(body) if body[:1] in (b"{", b"[") else body

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def stop(self, timeout=60) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def copy_stem(stem, directory) -> str:
    """A private copy of the index (json + npz), so a test may write new generations into it."""
    os.makedirs(directory, exist_ok=True)
    for suffix in (".json", ".npz"):
        shutil.copy(stem + suffix, os.path.join(directory, "catalog" + suffix))
    return os.path.join(directory, "catalog")


def looks_during_sigterm(server: "Server", scene_path, n: int, delay: float) -> list:
    """`n` looks of one scene posted at once, SIGTERM `delay` s later; their (status, headers, body)."""
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with open(scene_path, "rb") as f:
        image = f.read()
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(server.post, "/v1/look?k=2", image) for _ in range(n)]
        time.sleep(delay)
        server.proc.send_signal(signal.SIGTERM)
        return [f.result() for f in futures]
