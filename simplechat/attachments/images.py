"""Raster images: what a file is (by its first bytes, not its name or declared type), and its
check and thumbnail, with Pillow, in one decode at the smallest scale that serves.

``examine_image`` is the whole of the decoding, and runs in a short-lived child process started
for each upload (``attachments/decoding.py`` starts it, as ``python -I images.py``; ``main``
below is the child's side): an 8000 x 5000 PNG needs 160 MB of pixels, which the web process
would hold at its peak and partly keep afterwards, and the child can be given a memory limit and
killed when it runs too long. So this module imports only Pillow and the standard library, and
the child never imports the ``simplechat`` package (whose import builds the whole app). Before
Pillow decodes a pixel, a JPEG's scans are counted from its marker segments (a progressive file
can repeat a scan thousands of times in a few bytes each, and every one is decoded over the
whole picture) and a picture over ``MAX_PIXELS`` is refused. A truncated or otherwise broken
image fails to decode and is refused too (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off).
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import struct
import sys
from dataclasses import dataclass

from PIL import Image, ImageOps

MAX_PIXELS = 40_000_000  # an 8000 x 5000 picture; more is refused
DECODE_NICENESS = 10  # the decoding child's CPU priority, below the server's (see ``main``)
# examine_image checks the size itself, from the header, before any pixel is decoded. Pillow's
# own check would warn (through the process-wide warnings machinery, which cannot be caught
# safely on a thread) between its limit and twice it: it is off, replaced by ours.
Image.MAX_IMAGE_PIXELS = None
THUMBNAIL_SIZE = (320, 320)
REDUCING_GAP = 2.0  # decode and reduce to twice the thumbnail, then resample from there
# Pillow's format names; MPO is a camera's JPEG with a second picture after the first.
RASTER = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "GIF": "image/gif",
          "WEBP": "image/webp"}
# What a name or declared type that says "picture" looks like: such a file must decode.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")
HEAD_BYTES = 12  # enough of a file to tell its raster format
_FORMAT = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}

# Pillow reads a PNG's chunks, a JPEG's marker segments up to its first scan and a GIF's
# blocks up to its first picture in Python, a few microseconds each: 10 MiB of empty chunks
# held a thread (and the GIL, against the event loop) for 6 s. Real files hold at most a few
# thousand; past this many the file is refused before Pillow opens it.
MAX_SEGMENTS = 20_000
# Any JPEG marker but a stuffed zero, a fill byte or a restart (RSTn sits inside scan data).
_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_SOI, _EOI, _SOS, _TEM = 0xD8, 0xD9, 0xDA, 0x01
# Pillow raises these on a file it cannot read; each one means "not a picture we can show".
_BROKEN = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error,
           Image.DecompressionBombError, Image.DecompressionBombWarning)


class BadImage(Exception):
    """The file claims to be a picture and is not one that can be shown."""


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    width: int
    height: int
    thumbnail: bytes  # WebP, at most 320 x 320, turned the way the camera said


def raster_type(head: bytes) -> str | None:
    """``image/png``, ``image/jpeg``, ``image/gif`` or ``image/webp`` if a file's first bytes
    are those of one (the signatures Pillow itself goes by), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def jpeg_scans(data: bytes, stop_after: int) -> int:
    """How many scans (SOS segments) a JPEG holds up to its end (EOI), walking its marker
    segments as libjpeg does: a segment is skipped by its length, scan data up to the next
    marker, stray bytes between segments up to the next 0xFF. Counting stops one past
    ``stop_after``. Every scan libjpeg would decode is counted (a marker it would skip inside a
    segment is skipped here too), so the count is never too low. BadImage past MAX_SEGMENTS
    marker segments."""
    scans, segments, pos = 0, 0, 2  # after SOI
    while scans <= stop_after:
        found = _MARKER.search(data, pos)
        if found is None:
            break
        marker, pos = data[found.start() + 1], found.end()
        if marker == _EOI:
            break
        segments += 1
        if segments > MAX_SEGMENTS:
            raise BadImage(f"more than {MAX_SEGMENTS} JPEG marker segments")
        if marker in (_SOI, _TEM):  # no length follows
            continue
        if marker == _SOS:
            scans += 1
        # The length counts its own two bytes; a scan's data follows its header, and the next
        # search runs over it (stuffed zeros and restarts are not markers).
        pos += int.from_bytes(data[pos:pos + 2], "big")
    return scans


def png_chunks(data: bytes) -> int:
    """How many chunks a PNG holds up to IEND, each skipped by its length; BadImage past
    MAX_SEGMENTS."""
    chunks, pos = 0, 8  # after the signature
    while pos + 8 <= len(data):
        chunks += 1
        if chunks > MAX_SEGMENTS:
            raise BadImage(f"more than {MAX_SEGMENTS} PNG chunks")
        if data[pos + 4:pos + 8] == b"IEND":
            break
        pos += 12 + int.from_bytes(data[pos:pos + 4], "big")  # length, type, data, CRC
    return chunks


def gif_blocks(data: bytes) -> int:
    """How many extension blocks and sub-blocks a GIF holds before its first picture, each
    skipped by its length; BadImage past MAX_SEGMENTS. (The picture's own data is read by
    Pillow's decoder, in C.)"""
    blocks, pos = 0, 13  # after the header and the logical screen descriptor
    if len(data) > 10 and data[10] & 0x80:  # a global colour table follows
        pos += 3 << ((data[10] & 7) + 1)
    while pos < len(data) and data[pos] == 0x21:  # an extension: label, then sub-blocks
        pos += 2
        while pos < len(data):
            blocks += 1
            if blocks > MAX_SEGMENTS:
                raise BadImage(f"more than {MAX_SEGMENTS} GIF blocks before the picture")
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
    return blocks


def _check_structure(path: str, content_type: str, max_jpeg_scans: int) -> None:
    """Refuse, before Pillow opens it, a file whose structure alone costs more than a real
    picture's: too many JPEG scans, or too many segments, chunks or blocks."""
    if content_type not in ("image/jpeg", "image/png", "image/gif"):
        return  # WebP: libwebp reads the whole file, in C
    with open(path, "rb") as file:
        data = file.read()
    if content_type == "image/png":
        png_chunks(data)
    elif content_type == "image/gif":
        gif_blocks(data)
    elif jpeg_scans(data, max_jpeg_scans) > max_jpeg_scans:
        raise BadImage(f"more than {max_jpeg_scans} JPEG scans")


def examine_image(path: str, content_type: str, max_jpeg_scans: int) -> ImageInfo:
    """Decode the picture at ``path``, whose first bytes say ``content_type`` (see
    ``raster_type``), and make its thumbnail; BadImage if it is too large, has more than
    ``max_jpeg_scans`` scans (a JPEG) or MAX_SEGMENTS segments, chunks or blocks (see
    ``_check_structure``), or does not decode in full.

    CPU-heavy and memory-hungry: the server runs it in a child process (``main``). A JPEG is
    decoded at the smallest of libjpeg's scales (1/8, 1/4, 1/2) that still gives twice the
    thumbnail (every scan is still read, so a truncated one is refused all the same); any other
    format is decoded once, then reduced by a whole factor before it is resampled."""
    _check_structure(path, content_type, max_jpeg_scans)
    try:
        # The size is checked here, from the header, before any pixel is decoded.
        with Image.open(path, formats=[_FORMAT[content_type]]) as image:
            kind = RASTER.get(image.format or "")
            if kind != content_type:
                raise BadImage(f"{image.format} file with the signature of {content_type}")
            width, height = image.size
            if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
                raise BadImage(f"{width} x {height} pixels")
            thumbnail = _thumbnail(image)
    except _BROKEN as exc:
        raise BadImage(f"{type(exc).__name__}: {exc}") from exc
    return ImageInfo(kind, width, height, thumbnail)


def _thumbnail(image: Image.Image) -> bytes:
    """The first frame at most 320 x 320, as WebP; decodes ``image``, which must not be
    loaded yet (a JPEG's draft scale is chosen before decoding)."""
    image.seek(0)  # the first frame of an animation
    width, height = image.size
    scale = max(width / THUMBNAIL_SIZE[0], height / THUMBNAIL_SIZE[1], 1.0)
    # Pillow picks the largest 1/n scale that keeps the image at least this large.
    image.draft(None, (max(1, int(width / scale * REDUCING_GAP)),
                       max(1, int(height / scale * REDUCING_GAP))))
    image.thumbnail(THUMBNAIL_SIZE, reducing_gap=REDUCING_GAP)
    image.load()  # done by thumbnail unless the picture is small already; a truncated one fails
    thumb = ImageOps.exif_transpose(image)  # on the small image: a cheap copy
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA")
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80)
    return out.getvalue()


def main(argv: list[str]) -> int:
    """The child's side of ``decoding.examine_in_child``: ``images.py PATH CONTENT_TYPE
    MAX_JPEG_SCANS MEMORY_MB CPU_SECONDS`` examines one picture under those limits and writes
    its answer to stdout, a JSON header line and then the thumbnail's bytes: ``{"content_type",
    "width", "height", "thumbnail"}`` (the thumbnail's length) or ``{"refused": reason}``."""
    path, content_type, max_jpeg_scans, memory_mb, cpu_seconds = argv
    # Below the web process on the machine's cores: its loop serves everyone, this one upload.
    os.nice(DECODE_NICENESS)
    # The address space, not only the heap: whatever Pillow maps for pixels counts.
    memory = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # The parent kills the child at its wall-clock limit; this ends one the parent left behind.
    cpu = int(cpu_seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        info = examine_image(path, content_type, int(max_jpeg_scans))
    except BadImage as exc:
        header, body = {"refused": str(exc)}, b""
    except MemoryError:
        header, body = {"refused": f"more than {memory_mb} MB to decode"}, b""
    else:
        header = {"content_type": info.content_type, "width": info.width,
                  "height": info.height, "thumbnail": len(info.thumbnail)}
        body = info.thumbnail
    sys.stdout.buffer.write(json.dumps(header).encode() + b"\n" + body)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
