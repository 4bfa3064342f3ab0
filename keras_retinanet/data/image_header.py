"""What decoding an encoded image will allocate, read in the graph from its headers before anything is decoded.

A 48 KB PNG can declare 20000 x 20000 pixels; decoding it takes 1.2 GB. Serving reads the size first and refuses
such images (`keras_retinanet.export`). Formats: PNG (IHDR), BMP (DIB header), WebP (VP8, VP8L and VP8X; TensorFlow
cannot decode animated WebP into RGB, so those count as unknown), JPEG (its SOF marker, through
`tf.image.extract_jpeg_shape`), GIF (every frame's image descriptor: TensorFlow decodes all frames of an animation
on a canvas as large as the largest frame, whatever the logical screen says). Anything else (JPEG XL, which
TensorFlow 2.21 decodes too, included) is unknown, so that nothing of unchecked size is decoded.
"""

import tensorflow as tf

_HEAD = 32  # bytes: every header field read here lies in the first 30


def _little_endian(head, start, length):
    values = tf.cast(head[start:start + length], tf.int64)
    return tf.reduce_sum(values * (256 ** tf.range(length, dtype=tf.int64)))


def _big_endian(head, start, length):
    return _little_endian(tf.reverse(head[start:start + length], [0]), 0, length)


def encoded_image_size(encoded):
    """(height, width, frames) int64 that decoding the encoded image `encoded` (a string scalar) allocates: frames of
    height x width pixels; (-1, -1, 0) if its format is none of the above. Reads the first bytes (for JPEG, the
    markers up to the frame header; for GIF, the block structure, not the pixels) only."""
    # The first bytes, zero-padded: short inputs read as zeros instead of failing.
    first = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, _HEAD), b"\0" * _HEAD]), 0, _HEAD)
    head = tf.io.decode_raw(first, tf.uint8)

    def starts_with(prefix, at=0):
        return tf.equal(tf.strings.substr(first, at, len(prefix)), prefix)

    png = (_big_endian(head, 20, 4), _big_endian(head, 16, 4))
    # BMP sizes are signed 32-bit (a negative height means top-down rows).
    bmp_height = _little_endian(head, 22, 4)
    bmp = (tf.abs(tf.where(bmp_height >= 2**31, bmp_height - 2**32, bmp_height)), _little_endian(head, 18, 4))
    vp8 = (_little_endian(head, 28, 2) % 2**14, _little_endian(head, 26, 2) % 2**14)
    vp8l_bits = _little_endian(head, 21, 4)
    vp8l = (vp8l_bits // 2**14 % 2**14 + 1, vp8l_bits % 2**14 + 1)
    vp8x = (_little_endian(head, 27, 3) + 1, _little_endian(head, 24, 3) + 1)
    animated_vp8x = head[20] & 2 > 0
    unknown = (tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))
    webp = starts_with(b"RIFF") & starts_with(b"WEBP", at=8)
    cases = [
        (starts_with(b"\x89PNG\r\n\x1a\n"), png),
        (starts_with(b"BM"), bmp),
        (webp & starts_with(b"VP8 ", at=12), vp8),
        (webp & starts_with(b"VP8L", at=12), vp8l),
        (webp & starts_with(b"VP8X", at=12) & ~animated_vp8x, vp8x),
    ]
    height, width = unknown
    for matches, (case_height, case_width) in reversed(cases):
        height, width = tf.where(matches, case_height, height), tf.where(matches, case_width, width)

    frames = tf.where(height >= 0, tf.constant(1, tf.int64), 0)

    def jpeg_size():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1], tf.constant(1, tf.int64)

    return tf.case([(starts_with(b"\xff\xd8"), jpeg_size), (starts_with(b"GIF8"), lambda: gif_size(encoded))],
                   default=lambda: (height, width, frames))


def gif_size(encoded):
    """(height, width, frames) of the GIF `encoded`: its frames counted, the canvas as large as the logical screen
    and every frame's extent. Walks the blocks (one step a sub-block of at most 255 bytes), reading no pixels."""
    raw = tf.cast(tf.io.decode_raw(encoded, tf.uint8), tf.int32)
    end = tf.size(raw)
    data = tf.concat([raw, tf.zeros([256 + 13], tf.int32)], 0)  # reads past the end see zeros (end of sub-blocks)

    def byte(at):
        return tf.gather(data, tf.minimum(at, end))

    def word(at):
        return tf.cast(byte(at) + 256 * byte(at + 1), tf.int64)

    def color_table(flags):
        return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)

    def after_sub_blocks(at):
        at = tf.while_loop(lambda at: (at < end) & (tf.gather(data, at) > 0),
                           lambda at: at + 1 + tf.gather(data, at), [at])[0]
        return at + 1

    def step(at, frames, height, width):
        value = byte(at)
        is_image = tf.equal(value, 0x2C)  # image descriptor: left, top, width, height, flags; then the pixels
        is_extension = tf.equal(value, 0x21)  # a label byte, then sub-blocks
        sub_blocks = tf.where(is_extension, at + 2, at + 11 + color_table(byte(at + 9)))
        next_at = tf.cond(is_image | is_extension, lambda: after_sub_blocks(sub_blocks), lambda: end)  # trailer: done
        return (
            next_at,
            frames + tf.cast(is_image, tf.int64),
            tf.where(is_image, tf.maximum(height, word(at + 3) + word(at + 7)), height),
            tf.where(is_image, tf.maximum(width, word(at + 1) + word(at + 5)), width),
        )

    _, frames, height, width = tf.while_loop(
        lambda at, *_: at < end, step, (13 + color_table(byte(10)), tf.constant(0, tf.int64), word(8), word(6)),
    )
    return height, width, frames
