"""One image over HTTP, bounded: the body is read in chunks under a whole-file deadline, a size limit
and a stop flag, then decoded fully with PIL. Used by ctl_keras.download (retries, files, CLI).

Connections are reused: `new_pool()` is a urllib3 PoolManager (the connection pool under
requests.Session; thread-safe, one pool of keep-alive connections per host), shared by all download
threads, so an image host is not asked for a new TCP (and TLS) connection per image. A connection
whose body was not read to the end is closed, never reused.
"""

from __future__ import annotations

import http.client
import io
import threading
import time

import urllib3
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


class HTTPStatusError(Exception):
    """An HTTP error status worth retrying (5xx, 408, 429)."""

    def __init__(self, code: int):
        super().__init__(f"HTTP {code}")
        self.code = code


# Redirects are followed (at most 5); everything else is retried by ctl_keras.download, with backoff.
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, redirect=5, status=0, other=0, raise_on_status=False)


def new_pool(connections_per_host: int = 16) -> urllib3.PoolManager:
    """A pool for fetch(): up to `connections_per_host` kept-alive connections per host (one per
    download thread); more are opened when needed but not kept."""
    return urllib3.PoolManager(num_pools=64, maxsize=connections_per_host, block=False, retries=_RETRIES,
                               headers={"User-Agent": _USER_AGENT})


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
        try:
            chunk = response.read1(_CHUNK)
        except urllib3.exceptions.ProtocolError:  # the connection dropped inside the body
            if announced and announced.isdigit():
                raise http.client.IncompleteRead(b"".join(chunks), int(announced) - size) from None
            raise
        except urllib3.exceptions.ReadTimeoutError as err:
            raise TimeoutError(f"read timed out after {size} bytes ({err})") from None
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
          stop: threading.Event | None = None, pool: urllib3.PoolManager | None = None) -> bytes:
    """The complete, decodable body of `url`. Raises Permanent (4xx but 408/429, too large), BadImage,
    Stopped (`stop` set), TimeoutError (deadline) or a network/HTTP error worth retrying.
    `pool`: new_pool()'s, shared across calls and threads; None = a new connection for this one call."""
    stop = stop or threading.Event()
    url_deadline = time.monotonic() + deadline
    own_pool = pool is None
    pool = new_pool(1) if own_pool else pool
    response = None
    try:
        # The deadline is checked between reads, so one attempt lasts at most deadline + timeout.
        response = pool.request("GET", url, preload_content=False, decode_content=True,
                                timeout=urllib3.Timeout(connect=min(timeout, deadline), read=min(timeout, deadline)))
        if response.status >= 400:
            if response.status < 500 and response.status not in (408, 429):
                raise Permanent(f"HTTP {response.status}")
            raise HTTPStatusError(response.status)
        data = read_body(response, url_deadline, max_bytes, stop)
        response.release_conn()  # read to the end: back to the pool for the next image
        response = None
    except urllib3.exceptions.MaxRetryError as err:  # connect failed or too many redirects
        raise ConnectionError(f"{type(err.reason).__name__}: {err.reason}" if err.reason else str(err)) from None
    finally:
        if response is not None:  # body not read to the end: this connection cannot be reused
            response.close()
        if own_pool:
            pool.clear()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # OSError on a truncated file, UnidentifiedImageError on HTML error pages
    except Exception as e:
        raise BadImage(f"image does not decode ({e}), {len(data)} bytes") from None
    return data


def reason(error: BaseException) -> str:
    if isinstance(error, (HTTPStatusError, BadImage)):
        return str(error)
    if isinstance(error, http.client.IncompleteRead):
        return f"incomplete body ({len(error.partial)} bytes, {error.expected} more expected)"
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:200]  # one line, no tabs: it goes into a TSV
