"""The one decoding rule for images from users (data/image_rule.py states it), TensorFlow side: what the
serving graph calls on request bytes, so a SavedModel needs no pre-step and no Python.

JPEG: decoded as `augment.decode_image` decodes records (so a record's JPEG gives the training pixels
exactly; PIL's slower IDCT in the builder differs by a unit or two on sharp edges), CMYK converted by
TensorFlow's JPEG decoder with the rule's formula, then the EXIF orientation parsed in the graph from
the APP1 segment (`exif_orientation`) and applied. PNG: decoded to 8-bit RGBA (16-bit samples keep
their high byte) and composited on white. Records the builder wrote are plain 8-bit RGB JPEGs without
EXIF, for which this equals `augment.decode_image` (training keeps the cheaper one).
"""

from __future__ import annotations

import tensorflow as tf

_HEAD = 1 << 17  # bytes searched for the EXIF segment (it comes right after SOI / JFIF APP0)
_SEGMENTS = 16  # JPEG marker segments walked before giving up
_ENTRIES = 64  # IFD0 entries searched for the orientation tag
_ORIENTATION_TAG = 0x0112


def _u8(data: tf.Tensor) -> tf.Tensor:
    """The first _HEAD bytes as int32, then 16 zeros (reads past the end are clipped onto them)."""
    padded = tf.strings.join([tf.strings.substr(data, 0, _HEAD), b"\0" * 16])
    return tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int32)


def exif_orientation(data: tf.Tensor) -> tf.Tensor:
    """int32 scalar 1..8: the EXIF Orientation of one JPEG's bytes; 1 when absent or malformed."""
    a = _u8(data)
    size = tf.shape(a)[0]

    def at(i):
        return tf.gather(a, tf.clip_by_value(i, 0, size - 1))

    def be16(i):
        return at(i) * 256 + at(i + 1)

    def walk(i, pos, found):
        marker = at(pos + 1)
        is_exif = tf.logical_and(tf.equal(marker, 0xE1), tf.reduce_all(tf.equal(
            tf.stack([at(pos + 4 + k) for k in range(6)]), tf.constant([69, 120, 105, 102, 0, 0]))))
        return i + 1, pos + 2 + be16(pos + 2), tf.where(is_exif, pos, found)

    def more(i, pos, found):
        in_segments = tf.logical_and(tf.equal(at(pos), 0xFF), tf.logical_not(tf.reduce_any(tf.equal(
            at(pos + 1), tf.constant([0xDA, 0xD9, 0x00, 0xFF])))))
        return tf.logical_and(tf.logical_and(i < _SEGMENTS, found < 0), tf.logical_and(pos < size - 10, in_segments))

    _, _, app1 = tf.while_loop(more, walk, (tf.constant(0), tf.constant(2), tf.constant(-1)))
    tiff = app1 + 10
    little = tf.equal(at(tiff), 0x49)  # "II" (Intel) or "MM" (Motorola)

    def u16(i):
        return tf.where(little, at(i) + at(i + 1) * 256, at(i) * 256 + at(i + 1))

    def u32(i):
        return tf.where(little, u16(i) + u16(i + 2) * 65536, u16(i) * 65536 + u16(i + 2))

    ifd = tiff + u32(tiff + 4)
    count = u16(ifd)
    entries = ifd + 2 + 12 * tf.range(_ENTRIES)
    tags = tf.where(tf.range(_ENTRIES) < count, u16(entries), -1)
    values = u16(entries + 8)
    hit = tf.equal(tags, _ORIENTATION_TAG)
    value = tf.reduce_sum(tf.where(hit, values, 0) * tf.cast(tf.equal(tf.cumsum(tf.cast(hit, tf.int32)), 1), tf.int32))
    valid = tf.logical_and(tf.logical_and(app1 >= 0, tf.reduce_any(hit)), tf.logical_and(value >= 1, value <= 8))
    return tf.where(valid, value, 1)


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Apply EXIF orientation 1..8 to [H, W, C] (PIL's ImageOps.exif_transpose)."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,                                            # 1
        lambda: tf.reverse(image, [1]),                           # 2 mirror
        lambda: tf.reverse(image, [0, 1]),                        # 3 rotate 180
        lambda: tf.reverse(image, [0]),                           # 4 flip
        lambda: transpose(image),                                 # 5 transpose
        lambda: tf.image.rot90(image, k=3),                       # 6 rotate 90 clockwise
        lambda: tf.reverse(transpose(image), [0, 1]),             # 7 transverse
        lambda: tf.image.rot90(image, k=1),                       # 8 rotate 90 counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)


def _jpeg(data):
    image = tf.io.decode_jpeg(data, channels=3)  # TF's default IDCT, as augment.decode_image
    return tf.cast(orient(image, exif_orientation(data)), tf.float32)


def _png(data):
    rgba = tf.cast(tf.io.decode_png(data, channels=4, dtype=tf.uint8), tf.float32)
    # TensorFlow fills the alpha of 1/2/4-bit grey PNGs at their own depth (1, 3, 15 for opaque), not
    # at 255: IHDR's bit depth (byte 24) and colour type (byte 25, 0 = grey) tell when to rescale.
    ihdr = tf.cast(tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, b"\0" * 26]), 24, 2), tf.uint8), tf.float32)
    low_grey = tf.logical_and(tf.equal(ihdr[1], 0.0), ihdr[0] < 8.0)
    top = tf.where(low_grey, tf.pow(2.0, ihdr[0]) - 1.0, 255.0)
    alpha = tf.minimum(rgba[..., 3:] / top, 1.0)
    return tf.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha))


def decode_user_image(data: tf.Tensor) -> tf.Tensor:
    """One JPEG/PNG (scalar string, magic already checked) -> float32 [H, W, 3] in 0..255 by the rule."""
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
    image = tf.cond(is_jpeg, lambda: _jpeg(data), lambda: _png(data))
    image.set_shape([None, None, 3])
    return image
