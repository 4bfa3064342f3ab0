"""What an image file is, read from the file: its stored size, its EXIF orientation and whether TensorFlow decodes
it within the pixel limit; and boxes turned as EXIF orientation turns the pixels."""

import io
import os
import warnings

import numpy as np
from PIL import Image

from keras_retinanet.data.records import DataError, ImageInfo

# Formats `tf.io.decode_image` reads, as PIL names them.
# (MPO: multi-picture JPEGs from phone cameras, which decode as their first picture.)
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")
# Images with more pixels are skipped unless a `DataPolicy` says otherwise (50 megapixels: 600 MB as float32).
MAX_IMAGE_PIXELS = 50_000_000
_EXIF_ORIENTATION = 0x0112


class ImageProblem(DataError):
    """An image the policy skips (an error where it is not skipped): `reason` is a `SKIPS` key."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def inspect_image(source, verify=True, max_pixels=MAX_IMAGE_PIXELS, name=None):
    """`ImageInfo` of an image file path or encoded bytes; raises `ImageProblem` for the skips of the policy.

    With `verify`, decodes the pixels (finds truncated files); else reads only the header.
    """
    name = name or ("<image bytes>" if isinstance(source, bytes) else source)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise ImageProblem("missing_image", f"{name}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                width, height = image.size
                frames = 1
                if image.format == "GIF":  # TensorFlow decodes every frame, on a canvas as large as the largest
                    with io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb") as stream:
                        height, width, frames = gif_decoded_size(stream)
                if width * height * frames > max_pixels:
                    in_frames = f" in {frames} frames" if frames > 1 else ""
                    raise ImageProblem(
                        "oversized_image", f"{name}: {width} x {height} pixels{in_frames}, more than {max_pixels}"
                    )
                if image.format not in DECODABLE_FORMATS or getattr(image, "is_animated", False) \
                        and image.format == "WEBP":
                    raise ImageProblem(
                        "unreadable_image",
                        f"{name}: {'animated ' * (image.format == 'WEBP')}{image.format} images cannot be decoded "
                        f"by TensorFlow (use one of {', '.join(DECODABLE_FORMATS)}, WebP without animation)",
                    )
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
                if verify:
                    image.load()
    except ImageProblem:
        raise
    except Image.DecompressionBombError as error:
        raise ImageProblem("oversized_image", f"{name}: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageProblem("unreadable_image", f"{name}: not a readable image ({error})") from None
    if orientation not in range(1, 9):
        orientation = 1  # an invalid tag: viewers ignore it too, so the stored pixels are what annotators saw
    return ImageInfo(width, height, orientation)


def gif_decoded_size(stream):
    """(height, width, frames) that TensorFlow's GIF decoder allocates for the GIF in the binary `stream`: every
    frame, on a canvas as large as the logical screen and every frame's extent. Reads the block structure, not the
    pixels; `keras_retinanet.data.image_header.gif_size` does the same in the graph, for serving."""
    def read(count):
        data = stream.read(count)
        return data + bytes(count - len(data))  # past the end: zeros, which end the walk

    header = read(13)
    width, height = int.from_bytes(header[6:8], "little"), int.from_bytes(header[8:10], "little")
    frames = 0

    def skip_color_table(flags):
        if flags & 0x80:
            stream.seek(3 * 2 ** ((flags & 7) + 1), os.SEEK_CUR)

    skip_color_table(header[10])
    while True:
        block = read(1)[0]
        if block == 0x2C:  # image descriptor: left, top, width, height, flags; then the pixels
            descriptor = read(9)
            left, top, frame_width, frame_height = (int.from_bytes(descriptor[i:i + 2], "little") for i in (0, 2, 4, 6))
            width, height, frames = max(width, left + frame_width), max(height, top + frame_height), frames + 1
            skip_color_table(descriptor[8])
            read(1)  # LZW code size
        elif block == 0x21:  # extension: a label, then sub-blocks
            read(1)
        else:  # trailer or garbage
            return height, width, frames
        while length := read(1)[0]:
            stream.seek(length, os.SEEK_CUR)


def orient_boxes(boxes, orientation, width, height):
    """`xyxy` boxes on stored pixels of `width` x `height` -> on the upright image after EXIF `orientation`."""
    x1, y1, x2, y2 = np.asarray(boxes, np.float64).reshape(-1, 4).T
    corners = {
        1: (x1, y1, x2, y2),
        2: (width - x2, y1, width - x1, y2),  # mirrored left-right
        3: (width - x2, height - y2, width - x1, height - y1),  # turned 180 degrees
        4: (x1, height - y2, x2, height - y1),  # mirrored top-bottom
        5: (y1, x1, y2, x2),  # transposed
        6: (height - y2, x1, height - y1, x2),  # turned 90 degrees clockwise
        7: (height - y2, width - x2, height - y1, width - x1),  # transverse
        8: (y1, width - x2, y2, width - x1),  # turned 90 degrees counter-clockwise
    }[orientation]
    return np.stack(corners, axis=1)
