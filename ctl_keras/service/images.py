"""A request's scene photo, checked before it reaches the tower: what the towers accept (JPEG or
PNG, by magic bytes), its size read from the header alone (no pixel decoded); and the one-line
error answers (HTTPError, client text quoted back clipped)."""

from __future__ import annotations

import io
import re


class HTTPError(Exception):
    """An answer other than 200: status, one-line reason, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


ECHO_CHARS = 80  # a client's text quoted back in an error (an id, a category, a path) is clipped to this
_QUOTED = re.compile(r"'([^'\n]{%d})[^'\n]+'|\"([^\"\n]{%d})[^\"\n]+\"" % (ECHO_CHARS, ECHO_CHARS))


def clip_echoes(reason: str, limit: int = 1000) -> str:
    """An error line with every quoted part over ECHO_CHARS cut to ECHO_CHARS + '...' (a 100 KB product
    id is not sent back whole), the whole line at most `limit` characters."""
    reason = _QUOTED.sub(lambda m: f"'{m.group(1)}...'" if m.group(1) is not None else f'"{m.group(2)}..."', reason)
    return reason if len(reason) <= limit else reason[:limit] + "..."


_KNOWN = {b"RIFF": "WebP", b"GIF8": "GIF", b"BM": "BMP", b"II*\0": "TIFF", b"MM\0*": "TIFF"}
# A JPEG spends at least one bit on every 8 x 8 block (its DC code; a baseline scan one more for the
# end-of-block code), so a real one holds at least a byte per 512 pixels even for a flat grey frame
# with optimized Huffman tables. Fewer than a byte per 1024 claimed pixels is a forged or cut header:
# libjpeg only warns when the scan ends early and fills the rest grey, and TensorFlow's decoder
# (try_recover_truncated=False refuses only data that ends before the end-of-image marker) returns
# that grey frame as an image.
JPEG_MIN_BYTES_PER_PIXEL = 1 / 1024


def check_image(data: bytes, max_pixels: int) -> None:
    """HTTPError 415 (not JPEG/PNG), 422 (unreadable header), 413 (above max_pixels)."""
    from PIL import Image

    if not data:
        raise HTTPError(422, "empty body: send the scene photo's bytes")
    if not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
        kind = next((name for magic, name in _KNOWN.items() if data.startswith(magic)), None)
        raise HTTPError(415, f"{kind + ' images are' if kind else 'the body is'} not supported: "
                             "send a JPEG or PNG scene photo")
    Image.MAX_IMAGE_PIXELS = None  # the limit below is ours, checked before any decode
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:
        raise HTTPError(422, "the image header cannot be read (corrupt or truncated image)") from None
    if width * height > max_pixels:
        raise HTTPError(413, f"image of {width} x {height} = {width * height} pixels exceeds the limit of "
                             f"{max_pixels} pixels; send a downscaled image")
    if width < 1 or height < 1:
        raise HTTPError(422, f"image of {width} x {height} pixels is empty")
    if data[:2] == b"\xff\xd8" and len(data) < width * height * JPEG_MIN_BYTES_PER_PIXEL:
        raise HTTPError(422, f"JPEG header claims {width} x {height} pixels but the file holds only {len(data)} "
                             "bytes: truncated or forged image")


def image_type(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
