"""Raster images: what a file is (by its bytes, not its name), and thumbnails, with Pillow.

Decompression bombs are refused: ``Image.MAX_IMAGE_PIXELS`` makes Pillow raise for anything
past twice the limit, and anything past the limit itself is refused here before it is decoded.
A truncated or otherwise broken image fails to decode and is refused too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # an 8000 x 5000 picture; more is refused
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
THUMBNAIL_SIZE = (320, 320)
RASTER = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
# What a name or declared type that says "picture" looks like: such a file must decode.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")


class BadImage(Exception):
    """The file claims to be a picture and is not one that can be shown."""


@dataclass
class ImageInfo:
    content_type: str
    width: int
    height: int


def inspect_image(path: str) -> ImageInfo | None:
    """The type and size of a PNG, JPEG, GIF or WebP file, decoded in full to be sure; None if
    the file is not one of those; BadImage if it is one but too large or broken."""
    try:
        with warnings.catch_warnings():
            # Past the limit Pillow only warns (it raises past twice the limit): here that is
            # a refusal, not a line in the log.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            kind = image.format
            if kind not in RASTER:
                return None
            width, height = image.size
            if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
                raise BadImage("too many pixels")
            image.load()  # a truncated file fails here
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, ValueError,
            SyntaxError) as exc:
        raise BadImage(str(exc)) from exc
    return ImageInfo(RASTER[kind], width, height)


def make_thumbnail(path: str, target) -> None:
    """A WebP of at most 320 x 320 pixels, turned the way the camera said (EXIF)."""
    with Image.open(path) as image:
        image.seek(0)  # the first frame of an animation
        thumb = ImageOps.exif_transpose(image)
        thumb.thumbnail(THUMBNAIL_SIZE)
        if thumb.mode not in ("RGB", "RGBA"):
            thumb = thumb.convert("RGBA")
        thumb.save(target, format="WEBP", quality=80)
