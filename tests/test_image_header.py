"""The size an encoded image declares, read from its header in the graph: every format, odd sizes."""

import io
import struct

import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.data.image_header import encoded_image_size

SIZE = tf.function(encoded_image_size, input_signature=[tf.TensorSpec([], tf.string)])


def _encoded(format, size, mode="RGB", **options):
    stream = io.BytesIO()
    Image.new(mode, size).save(stream, format, **options)
    return stream.getvalue()


@pytest.mark.parametrize("format, options", [
    ("PNG", {}), ("GIF", {}), ("BMP", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("WEBP", {"lossless": True}), ("WEBP", {"quality": 80}),
], ids=["png", "gif", "bmp", "jpeg", "progressive-jpeg", "webp-lossless-vp8l", "webp-lossy-vp8"])
@pytest.mark.parametrize("size", [(1001, 3), (3, 1001), (37, 23)])
def test_each_format_declares_its_height_and_width(format, options, size):
    assert [int(v) for v in SIZE(_encoded(format, size, **options))] == [size[1], size[0]]


def test_extended_webp_and_top_down_bmp():
    vp8x = _encoded("WEBP", (513, 77), "RGBA", quality=80, exif=b"Exif\0\0")
    assert vp8x[12:16] == b"VP8X" and [int(v) for v in SIZE(vp8x)] == [77, 513]
    bmp = bytearray(_encoded("BMP", (5, 9)))
    bmp[22:26] = struct.pack("<i", -9)  # rows stored top-down
    assert [int(v) for v in SIZE(bytes(bmp))] == [9, 5]


@pytest.mark.parametrize("data", [b"", b"hi", b"not an image at all, but long enough to have 32 bytes"])
def test_unknown_or_short_bytes_declare_no_size(data):
    assert [int(v) for v in SIZE(data)] == [-1, -1]
