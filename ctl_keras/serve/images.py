"""A request's scene photo, checked before it reaches the tower: what the towers accept (JPEG or
PNG, by magic bytes), its size read from the header alone (no pixel decoded)."""

from __future__ import annotations

import io


class HTTPError(Exception):
    """An answer other than 200: status, one-line reason, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


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
