"""An uploaded picture is decoded in a short-lived child process, one per upload, never in the
web process: the pixels (160 MB for an 8000 x 5000 PNG, which Pillow cannot decode at a
reduced scale) are held by the child and given back to the system when it exits, the child's
address space is limited (``CHAT_IMAGE_DECODE_MEMORY_MB``) and it is killed past
``CHAT_IMAGE_DECODE_SECONDS``. Its answer is checked before it is believed: a child that
crashed, was killed or wrote anything but a well-formed answer has its picture refused.

The child runs ``images.py`` as a script with the server's own interpreter in isolated mode
(``-I``: no environment variables, no user site, not the script's folder on the path), so it
imports Pillow and the standard library only, never the ``simplechat`` package. The caller
waits for it on a thread of the offload pool (``infra/offload.py``), so the event loop goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import tempfile

from simplechat.attachments import images
from simplechat.attachments.images import MAX_PIXELS, RASTER, BadImage, ImageInfo
from simplechat.infra.offload import original

log = logging.getLogger(__name__)

MAX_THUMBNAIL_BYTES = 1024 * 1024  # a 320 x 320 WebP is a few KB; more is no answer of ours
_RASTER_TYPES = set(RASTER.values())


def examine_in_child(path: str, content_type: str, max_jpeg_scans: int, seconds: float,
                     memory_mb: int) -> ImageInfo:
    """``images.examine_image(path, content_type, max_jpeg_scans)`` in a child process with at
    most ``memory_mb`` MB of address space, killed after ``seconds``; its ImageInfo, or
    BadImage (its own reason, or the child's failure). Blocks its thread until the child ends:
    call it through ``offload``."""
    spawn, waitpid = original("os", "posix_spawn"), original("os", "waitpid")
    argv = [sys.executable, "-I", images.__file__, path, content_type, str(max_jpeg_scans),
            str(memory_mb), str(math.ceil(seconds) + 1)]
    with tempfile.TemporaryFile(prefix="simplechat-decode-") as out, \
            tempfile.TemporaryFile(prefix="simplechat-decode-") as err:
        pid = spawn(sys.executable, argv, {}, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        status = None
        try:
            status = _wait(pid, seconds)
        finally:  # past the limit, or this thread interrupted: the child does not outlive it
            if status is None:
                os.kill(pid, signal.SIGKILL)
                waitpid(pid, 0)
        if status is None:
            log.warning("decoding a picture took over %s s: child %d killed", seconds, pid)
            raise BadImage(f"not decoded within {seconds} s")
        out.seek(0)
        answer = out.read(MAX_THUMBNAIL_BYTES + 4096)
        err.seek(0)
        complaint = err.read(2000).decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        log.warning("the picture decoder ended with %s: %s",
                    f"signal {-code}" if code < 0 else f"code {code}", complaint)
        raise BadImage("the decoder failed")
    return _read_answer(answer, content_type)


def _wait(pid: int, seconds: float) -> int | None:
    """The child's wait status once it ends, or None if it is still running after
    ``seconds``. Polled, a few milliseconds at a time: no green wait works on this thread."""
    waitpid, sleep = original("os", "waitpid"), original("time", "sleep")
    monotonic = original("time", "monotonic")
    deadline, pause = monotonic() + seconds, 0.002
    while True:
        done, status = waitpid(pid, os.WNOHANG)
        if done:
            return status
        left = deadline - monotonic()
        if left <= 0:
            return None
        sleep(min(pause, left))
        pause = min(pause * 2, 0.05)


def _read_answer(answer: bytes, content_type: str) -> ImageInfo:
    """The ImageInfo a child wrote (see ``images.main``), BadImage with its reason if it refused
    the picture, or BadImage if its answer is not one it could have written."""
    line, _, thumbnail = answer.partition(b"\n")
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if isinstance(header, dict) and isinstance(header.get("refused"), str):
        raise BadImage(header["refused"])
    if not (isinstance(header, dict) and header.get("content_type") == content_type
            and content_type in _RASTER_TYPES
            and all(type(header.get(key)) is int for key in ("width", "height", "thumbnail"))
            and header["width"] > 0 and header["height"] > 0
            and header["width"] * header["height"] <= MAX_PIXELS
            and header["thumbnail"] == len(thumbnail)
            and thumbnail[:4] == b"RIFF" and thumbnail[8:12] == b"WEBP"):
        log.warning("the picture decoder answered garbage: %r", answer[:200])
        raise BadImage("the decoder's answer is garbage")
    return ImageInfo(content_type, header["width"], header["height"], thumbnail)
