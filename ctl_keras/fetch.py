"""One image over HTTP, bounded: the body is read in chunks under a whole-file deadline, a size limit
and a stop flag, then decoded fully with PIL. Used by ctl_keras.download (retries, files, CLI)."""

from __future__ import annotations

import http.client
import io
import threading
import time
import urllib.error
import urllib.request

from PIL import Image

_USER_AGENT = "ctl_keras-downloader/1.0"
DEFAULT_MAX_BYTES = 64 * 2 ** 20  # STL images are ~50 KB, Street2Shop photos a few MB
DEFAULT_DEADLINE = 300.0  # seconds for one attempt at one file
_CHUNK = 64 * 1024


def is_valid_image(path: str) -> bool:
    """True if `path` is an image PIL decodes to the last pixel."""
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:  # PIL raises many types for bad files; any of them means "fetch it again"
        return False


class Permanent(Exception):
    """A failure that retrying will not fix (404 and the like)."""


class BadImage(Exception):
    """The body arrived but is not a complete image."""


class Stopped(Exception):
    """The run is being interrupted: give up this file without counting it."""


def read_body(response, url_deadline: float, max_bytes: int, stop: threading.Event) -> bytes:
    """The whole body, in chunks, checking the deadline, the size and the stop flag between reads.

    read1 returns whatever one socket read gives; read(n) would wait for n bytes, so a trickling
    server would never let the deadline be checked.
    """
    announced = response.headers.get("Content-Length")
    if announced and announced.isdigit() and int(announced) > max_bytes:
        raise Permanent(f"body of {int(announced)} bytes exceeds --max_bytes={max_bytes}")
    chunks, size = [], 0
    while True:
        if stop.is_set():
            raise Stopped()
        if time.monotonic() > url_deadline:
            raise TimeoutError(f"whole-file deadline exceeded after {size} bytes")
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise Permanent(f"body exceeds --max_bytes={max_bytes} (more than {size - len(chunk)} bytes sent)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if announced and announced.isdigit() and len(data) < int(announced):
        raise http.client.IncompleteRead(data, int(announced) - len(data))
    return data


def fetch(url: str, timeout: float, deadline: float = DEFAULT_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES,
           stop: threading.Event | None = None) -> bytes:
    """The complete, decodable body of `url`. Raises Permanent (4xx but 408/429, too large), BadImage,
    Stopped (`stop` set), TimeoutError (deadline) or a network/HTTP error worth retrying."""
    stop = stop or threading.Event()
    url_deadline = time.monotonic() + deadline
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        # The deadline is checked between reads, so one attempt lasts at most deadline + timeout.
        with urllib.request.urlopen(request, timeout=min(timeout, deadline)) as response:
            data = read_body(response, url_deadline, max_bytes, stop)
    except urllib.error.HTTPError as e:
        if 400 <= e.code < 500 and e.code not in (408, 429):
            raise Permanent(f"HTTP {e.code}") from None
        raise
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # OSError on a truncated file, UnidentifiedImageError on HTML error pages
    except Exception as e:
        raise BadImage(f"image does not decode ({e}), {len(data)} bytes") from None
    return data


def reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, BadImage):
        return str(error)
    if isinstance(error, http.client.IncompleteRead):
        return f"incomplete body ({len(error.partial)} bytes, {error.expected} more expected)"
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:200]  # one line, no tabs: it goes into a TSV
