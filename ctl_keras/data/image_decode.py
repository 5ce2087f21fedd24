"""The one decoding rule for images from users (data/image_rule.py states it), TensorFlow side: what the
serving graph calls on request bytes, so a SavedModel needs no pre-step and no Python.

JPEG (and MPO, a JPEG stream): decoded as `augment.decode_image` decodes records (so a record's JPEG
gives the training pixels exactly; PIL's slower IDCT in the builder differs by a unit or two on sharp
edges), CMYK converted by TensorFlow's JPEG decoder with the rule's formula, then the EXIF orientation
found by the rule's marker walk (`exif_orientation`, a bounded tf.while_loop mirroring
image_rule.exif_orientation) and applied. PNG: decoded to 8-bit RGBA (16-bit samples keep
their high byte) and composited on white. Records the builder wrote are plain 8-bit RGB JPEGs without
EXIF, for which this equals `augment.decode_image` (training keeps the cheaper one).
"""

from __future__ import annotations

import tensorflow as tf

from ctl_keras.data import image_rule

# The walk and its limits are image_rule's (one rule, two implementations, tested against each other).
_MAX_ENTRIES = (0xFFFF - 8) // 12 + 1  # every IFD entry that fits in one APP1 segment
_STOPS = (0x00, 0xD9, 0xDA)  # not a marker, EOI, SOS: no EXIF past it


def _head(data: tf.Tensor, size: tf.Tensor, pos: tf.Tensor) -> tf.Tensor:
    """int64 [10]: the bytes at pos, zeros past the end."""
    chunk = tf.strings.substr(data, tf.minimum(pos, size), 10)
    return tf.cast(tf.io.decode_raw(tf.strings.join([chunk, b"\0" * 10]), tf.uint8)[:10], tf.int64)


def _find_exif(data: tf.Tensor, size: tf.Tensor):
    """(found, start, length) of the first EXIF block's TIFF data, walking markers as image_rule does."""
    def walk(i, pos, state, start, length):
        h = _head(data, size, pos)
        marker, seg = h[1], h[2] * 256 + h[3]
        is_ff = tf.equal(h[0], 0xFF)
        fill = tf.equal(marker, 0xFF)
        alone = tf.reduce_any(tf.equal(marker, tf.constant(image_rule.STANDALONE_MARKERS, tf.int64)))
        stop = tf.logical_or(tf.reduce_any(tf.equal(marker, tf.constant(_STOPS, tf.int64))), seg < 2)
        skip = tf.logical_or(fill, alone)
        exif = tf.logical_and(tf.logical_and(tf.equal(marker, 0xE1), seg >= 8), tf.reduce_all(
            tf.equal(h[4:10], tf.constant([69, 120, 105, 102, 0, 0], tf.int64))))
        exif = tf.logical_and(tf.logical_and(is_ff, tf.logical_not(skip)), tf.logical_and(tf.logical_not(stop), exif))
        ended = tf.logical_or(tf.logical_not(is_ff), tf.logical_and(tf.logical_not(skip), stop))
        state = tf.where(exif, 2, tf.where(ended, 1, 0))
        step = tf.where(fill, tf.constant(1, tf.int64), tf.where(alone, tf.constant(2, tf.int64), 2 + seg))
        return i + 1, pos + step, state, tf.where(exif, pos + 10, start), tf.where(exif, seg - 8, length)

    def more(i, pos, state, start, length):
        return tf.logical_and(i < image_rule.MAX_MARKERS, tf.equal(state, 0))

    zero = tf.constant(0, tf.int64)
    _, _, state, start, length = tf.while_loop(
        more, walk, (tf.constant(0), tf.constant(2, tf.int64), tf.constant(0), zero, zero))
    return tf.equal(state, 2), start, length


def exif_orientation(data: tf.Tensor) -> tf.Tensor:
    """int32 scalar 1..8: the EXIF Orientation of one image's bytes by image_rule's rule (1 when absent,
    malformed, past the marker limit, or not a JPEG)."""
    size = tf.cast(tf.strings.length(data), tf.int64)
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), image_rule.JPEG_MAGIC)
    found, start, n = _find_exif(data, size)
    found = tf.logical_and(is_jpeg, found)
    n = tf.where(found, n, 0)
    chunk = tf.strings.substr(data, tf.minimum(start, size), n)  # clipped at the end of the file
    a = tf.cast(tf.io.decode_raw(tf.strings.join([chunk, b"\0"]), tf.uint8), tf.int64)
    m = tf.cast(tf.strings.length(chunk), tf.int64)

    def at(i):  # bytes of the block; zeros past the end of the file, as image_rule pads
        return tf.where(i < m, tf.gather(a, tf.clip_by_value(i, 0, m)), 0)

    magic = tf.stack([at(tf.constant(k, tf.int64)) for k in range(4)])
    little = tf.reduce_all(tf.equal(magic, tf.constant([0x49, 0x49, 0x2A, 0], tf.int64)))
    big = tf.reduce_all(tf.equal(magic, tf.constant([0x4D, 0x4D, 0, 0x2A], tf.int64)))

    def u16(i):
        return tf.where(little, at(i) + at(i + 1) * 256, at(i) * 256 + at(i + 1))

    def u32(i):
        return tf.where(little, u16(i) + u16(i + 2) * 65536, u16(i) * 65536 + u16(i + 2))

    ifd = u32(tf.constant(4, tf.int64))
    k = tf.range(_MAX_ENTRIES, dtype=tf.int64)
    entries = ifd + 2 + 12 * k
    inside = tf.logical_and(k < u16(ifd), entries + 12 <= n)  # image_rule stops at the first outside
    hit = tf.logical_and(inside, tf.equal(u16(entries), image_rule.ORIENTATION_TAG))
    entry = ifd + 2 + 12 * tf.argmax(tf.cast(hit, tf.int32), output_type=tf.int64)
    kind = u16(entry + 2)
    value = tf.where(tf.equal(kind, 3), u16(entry + 8), tf.where(tf.equal(kind, 4), u32(entry + 8), 0))
    valid = tf.stack([found, tf.logical_or(little, big), n >= 8, ifd + 2 <= n, tf.reduce_any(hit),
                      tf.equal(u32(entry + 4), 1), value >= 1, value <= 8])
    return tf.cast(tf.where(tf.reduce_all(valid), value, 1), tf.int32)


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
