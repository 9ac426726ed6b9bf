"""The attachment store: files by key, behind a small seam. The directory implementation keeps
them under ``ATTACHMENT_DIR`` (default ``<instance>/attachments``), which every web process and
worker must share (docker-compose mounts one volume there)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import BinaryIO, Protocol

# An attachment, its thumbnail, or a user's data export (profile/export.py).
KEY = re.compile(r"^[0-9a-f]{32}(\.thumb|\.zip)?$")


class AttachmentStore(Protocol):
    def save(self, key: str, source: BinaryIO) -> int: ...
    def open(self, key: str) -> BinaryIO: ...
    def delete(self, key: str) -> None: ...


class DirectoryStore:
    """Files in a directory tree, two hex characters of the key per level."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def _file(self, key: str) -> str:
        if not KEY.match(key):  # keys are ours, never a user's file name; this keeps it so
            raise ValueError(f"not an attachment key: {key!r}")
        return os.path.join(self.root, key[:2], key)

    def save(self, key: str, source: BinaryIO) -> int:
        """Write ``source`` under ``key`` (atomically: a reader never sees half a file);
        returns the bytes written."""
        target = self._file(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
                size = out.tell()
            os.replace(temporary, target)
        except BaseException:
            with _quietly():
                os.unlink(temporary)
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        return open(self._file(key), "rb")  # noqa: SIM115 (the response closes it)

    def delete(self, key: str) -> None:
        with _quietly():
            os.unlink(self._file(key))


class _quietly:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, FileNotFoundError)


def attachment_store() -> AttachmentStore:
    """This app's store, built on first use from ``ATTACHMENT_DIR``."""
    from simplechat.infra.services import built_once

    def build(app) -> AttachmentStore:
        root = app.config.get("ATTACHMENT_DIR") or os.path.join(app.instance_path, "attachments")
        return DirectoryStore(root)

    return built_once("simplechat.attachment_store", build)

