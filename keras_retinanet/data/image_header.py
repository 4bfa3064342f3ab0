"""The pixel size an encoded image declares in its header, read in the graph before anything is decoded.

A 48 KB PNG can declare 20000 x 20000 pixels; decoding it takes 1.2 GB. Serving reads the size first and refuses
such images (`keras_retinanet.export`). Formats: PNG (IHDR), GIF (logical screen), BMP (DIB header), WebP (VP8,
VP8L and VP8X), JPEG (its SOF marker, through `tf.image.extract_jpeg_shape`).
"""

import tensorflow as tf

_HEAD = 32  # bytes: every header field read here lies in the first 30


def _little_endian(head, start, length):
    values = tf.cast(head[start:start + length], tf.int64)
    return tf.reduce_sum(values * (256 ** tf.range(length, dtype=tf.int64)))


def _big_endian(head, start, length):
    return _little_endian(tf.reverse(head[start:start + length], [0]), 0, length)


def encoded_image_size(encoded):
    """(height, width) int64 that the encoded image `encoded` (a string scalar) declares, or (-1, -1) if its format
    is none of the above. Reads the first bytes (and, for JPEG, the markers up to the frame header) only."""
    # The first bytes, zero-padded: short inputs read as zeros instead of failing.
    first = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, _HEAD), b"\0" * _HEAD]), 0, _HEAD)
    head = tf.io.decode_raw(first, tf.uint8)

    def starts_with(prefix, at=0):
        return tf.equal(tf.strings.substr(first, at, len(prefix)), prefix)

    png = (_big_endian(head, 20, 4), _big_endian(head, 16, 4))
    gif = (_little_endian(head, 8, 2), _little_endian(head, 6, 2))
    # BMP sizes are signed 32-bit (a negative height means top-down rows).
    bmp_height = _little_endian(head, 22, 4)
    bmp = (tf.abs(tf.where(bmp_height >= 2**31, bmp_height - 2**32, bmp_height)), _little_endian(head, 18, 4))
    vp8 = (_little_endian(head, 28, 2) % 2**14, _little_endian(head, 26, 2) % 2**14)
    vp8l_bits = _little_endian(head, 21, 4)
    vp8l = (vp8l_bits // 2**14 % 2**14 + 1, vp8l_bits % 2**14 + 1)
    vp8x = (_little_endian(head, 27, 3) + 1, _little_endian(head, 24, 3) + 1)
    unknown = (tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))
    webp = starts_with(b"RIFF") & starts_with(b"WEBP", at=8)
    cases = [
        (starts_with(b"\x89PNG\r\n\x1a\n"), png),
        (starts_with(b"GIF8"), gif),
        (starts_with(b"BM"), bmp),
        (webp & starts_with(b"VP8 ", at=12), vp8),
        (webp & starts_with(b"VP8L", at=12), vp8l),
        (webp & starts_with(b"VP8X", at=12), vp8x),
    ]
    height, width = unknown
    for matches, (case_height, case_width) in reversed(cases):
        height, width = tf.where(matches, case_height, height), tf.where(matches, case_width, width)

    def jpeg_size():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    return tf.cond(starts_with(b"\xff\xd8"), jpeg_size, lambda: (height, width))
