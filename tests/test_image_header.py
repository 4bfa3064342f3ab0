"""What decoding an encoded image allocates, read from its headers in the graph (serving) and in Python (the data
policy): every format, odd sizes, GIF frames beyond the logical screen, animations, formats without a header."""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.data.image_header import encoded_image_size
from keras_retinanet.data.images import ImageProblem, gif_decoded_size, inspect_image

SIZE = tf.function(encoded_image_size, input_signature=[tf.TensorSpec([], tf.string)])


def _encoded(format, size, mode="RGB", **options):
    stream = io.BytesIO()
    Image.new(mode, size).save(stream, format, **options)
    return stream.getvalue()


def _declared(data):
    return [int(v) for v in SIZE(data)]


@pytest.mark.parametrize("format, options", [
    ("PNG", {}), ("GIF", {}), ("BMP", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("WEBP", {"lossless": True}), ("WEBP", {"quality": 80}),
], ids=["png", "gif", "bmp", "jpeg", "progressive-jpeg", "webp-lossless-vp8l", "webp-lossy-vp8"])
@pytest.mark.parametrize("size", [(1001, 3), (3, 1001), (37, 23)])
def test_each_format_declares_its_height_and_width(format, options, size):
    assert _declared(_encoded(format, size, **options)) == [size[1], size[0], 1]


def test_extended_webp_and_top_down_bmp():
    vp8x = _encoded("WEBP", (513, 77), "RGBA", quality=80, exif=b"Exif\0\0")
    assert vp8x[12:16] == b"VP8X" and _declared(vp8x) == [77, 513, 1]
    bmp = bytearray(_encoded("BMP", (5, 9)))
    bmp[22:26] = struct.pack("<i", -9)  # rows stored top-down
    assert _declared(bytes(bmp)) == [9, 5, 1]


JPEG_XL_CODESTREAM = b"\xff\x0a" + bytes(40)
JPEG_XL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(40)


@pytest.mark.parametrize("data", [b"", b"hi", b"not an image at all, but long enough to have 32 bytes",
                                  JPEG_XL_CODESTREAM, JPEG_XL_CONTAINER], ids=["empty", "short", "text", "jxl",
                                                                               "jxl-container"])
def test_unknown_or_short_bytes_declare_no_size(data):
    assert _declared(data) == [-1, -1, 0]


def gif(frame_sizes, screen=None, noise=False):
    """A GIF whose frames have `frame_sizes` (width, height), each at the top left; its logical screen then
    rewritten to `screen` if given (as a hostile file may declare)."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.integers(0, 255, (h, w)) if noise else np.full((h, w), 40 * i)).astype(np.uint8))
              for i, (w, h) in enumerate(frame_sizes)]
    stream = io.BytesIO()
    frames[0].save(stream, "GIF", save_all=len(frames) > 1, append_images=frames[1:], disposal=1, optimize=False)
    data = bytearray(stream.getvalue())
    if screen is not None:
        data[6:10] = struct.pack("<HH", *screen)
    return bytes(data)


def test_animated_webp_is_unknown_to_the_graph_and_unreadable_to_the_policy():
    frames = [Image.new("RGB", (40, 30), (10 * i, 0, 0)) for i in range(3)]
    stream = io.BytesIO()
    frames[0].save(stream, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert _declared(stream.getvalue()) == [-1, -1, 0]
    with pytest.raises(ImageProblem, match="animated WEBP images cannot be decoded by TensorFlow"):
        inspect_image(stream.getvalue(), name="anim.webp")


@pytest.mark.parametrize("frame_sizes, screen, expected", [
    ([(300, 200)], None, [200, 300, 1]),
    ([(300, 200)], (64, 64), [200, 300, 1]),  # a frame larger than the logical screen it declares
    ([(64, 48)], (640, 480), [480, 640, 1]),
    ([(100, 80)] * 5, None, [80, 100, 5]),  # an animation: every frame is decoded
    ([(30, 20), (30, 20), (30, 20)], (30, 20), [20, 30, 3]),
], ids=["still", "frame-beyond-screen", "screen-beyond-frame", "animation", "three-frames"])
def test_gif_frames_and_canvas_as_tensorflow_decodes_them(frame_sizes, screen, expected):
    data = gif(frame_sizes, screen)
    assert _declared(data) == expected
    assert list(gif_decoded_size(io.BytesIO(data))) == expected
    decoded = tf.io.decode_gif(data)
    assert decoded.shape[0] == expected[2] and decoded.shape[1] * decoded.shape[2] <= expected[0] * expected[1]


def test_a_gif_bomb_is_refused_by_the_policy_from_its_frames():
    """A 64 x 64 logical screen holding a 4000 x 4000 frame, and 30 frames of 1000 x 1000: over 1e6 pixels each,
    although the screen, or each frame, is within it."""
    for data, named in ((gif([(4000, 4000)], screen=(64, 64)), "4000 x 4000 pixels, more than 1000000"),
                        (gif([(1000, 1000)] * 30, noise=False), "1000 x 1000 pixels in 30 frames, more than")):
        assert len(data) < 400_000
        with pytest.raises(ImageProblem, match=named) as error:
            inspect_image(data, max_pixels=1_000_000, name="bomb.gif")
        assert error.value.reason == "oversized_image"
    assert inspect_image(gif([(900, 1000)]), max_pixels=1_000_000, name="fine.gif").width == 900
