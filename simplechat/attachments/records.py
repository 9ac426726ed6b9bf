"""Attachments: uploading one to a conversation, attaching uploads to a message as it is sent,
and who may fetch a file."""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import tempfile
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import delete, func, select, update
from werkzeug.datastructures import FileStorage

from simplechat.attachments.decoding import examine_in_child
from simplechat.attachments.images import (
    HEAD_BYTES,
    IMAGE_EXTENSIONS,
    RASTER,
    BadImage,
    raster_type,
)
from simplechat.attachments.store import attachment_store
from simplechat.extensions import db, end_transaction
from simplechat.infra.membership import is_participant
from simplechat.infra.offload import Busy, offload
from simplechat.infra.services import built_once, services
from simplechat.models import Attachment, Message, User

log = logging.getLogger(__name__)

# One picture decoded at a time on each web process: an 8000 x 5000 PNG decodes into 160 MB
# (Pillow keeps RGB in 4 bytes a pixel), held by its decoding child process (decoding.py), and
# CHAT_CPU_WORKERS children at once would hold that many times it on the machine. An upload
# waits at most DECODE_WAIT seconds for its turn, then answers unavailable.
DECODE_WAIT = 30.0


def _decode_gate() -> threading.BoundedSemaphore:
    # Made on first use, after the server's monkey patching: a green semaphore under eventlet.
    return built_once("simplechat.image_decodes", lambda app: threading.BoundedSemaphore(1))

ATTACHMENT_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_PER_MESSAGE = 10
MAX_NAME = 255
# A declared type is kept only if it looks like one; it never makes a file display inline.
_SAFE_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$")
_UNSAFE_IN_NAME = re.compile(r'[<>:"|?*/\\]')
RASTER_TYPES = set(RASTER.values())


def clean_name(raw: object) -> str:
    """A file name fit to show and to offer as a download name: the last path part only, no
    control or format characters, no leading dots, at most 255 characters (the extension
    kept); "file" when nothing is left."""
    name = raw if isinstance(raw, str) else ""
    name = name.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_IN_NAME.sub("_", name).strip().lstrip(".").strip()
    if len(name) > MAX_NAME:
        stem, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = stem[:MAX_NAME - len(ext)] + ext
    return name or "file"


def attachment_payload(attachment: Attachment) -> dict:
    url = f"/api/attachments/{attachment.id}"
    return {"id": attachment.id, "name": attachment.name, "size": attachment.size,
            "content_type": attachment.content_type, "url": url,
            "thumbnail_url": url + "/thumbnail" if attachment.has_thumbnail else None,
            "width": attachment.width, "height": attachment.height}


@dataclass
class Refusal:
    code: str
    status: int
    retry_after: float | None = None  # rate_limited: seconds
    limits: dict[str, int] | None = None  # too_many: the limits passed, for the answer


def _declared_type(file: FileStorage) -> str:
    declared = (file.mimetype or "").lower()
    return declared if _SAFE_TYPE.match(declared) else "application/octet-stream"


def _looks_like_image(name: str, declared: str) -> bool:
    return declared.startswith("image/") and declared != "image/svg+xml" or (
        name.lower().endswith(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class UnsentUsage:
    """A user's uploads not sent yet (nor deleted): how many, and their bytes in all."""

    count: int
    size: int

    def refusal(self, adding: int = 0) -> Refusal | None:
        """``too_many`` if one more upload of ``adding`` bytes would pass either limit."""
        config = current_app.config
        most, most_bytes = config["CHAT_MAX_UNSENT_UPLOADS"], config["CHAT_MAX_UNSENT_UPLOAD_BYTES"]
        if self.count + 1 > most or self.size + max(adding, 1) > most_bytes:
            return Refusal("too_many", 429, limits={"max_unsent_uploads": most,
                                                     "max_unsent_upload_bytes": most_bytes})
        return None


def unsent_usage(user_id: int, lock: bool = False) -> UnsentUsage:
    """One aggregate over the user's unsent uploads. With ``lock`` the user's row is locked
    first (until the transaction ends), so two uploads at once cannot both take the last
    place."""
    if lock:
        db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
    count, size = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Attachment.size), 0))
        .where(Attachment.uploader_id == user_id, Attachment.message_id.is_(None),
               Attachment.deleted_at.is_(None))).one()
    return UnsentUsage(int(count), int(size))


def upload(user_id: int, conversation_id: int, read_file: Callable[[], FileStorage | None]
           ) -> tuple[dict | None, Refusal | None]:
    """Store an uploaded file for a conversation; the attachment's payload, or the refusal.
    ``read_file`` parses the request body for the file: called only once the caller is known
    to be a participant within the upload rate limit and the unsent-upload quota.

    The file is read to a local temporary file first: its size is checked as it streams. A
    file whose first bytes are a PNG's, JPEG's, GIF's or WebP's is decoded in full and
    thumbnailed in a child process, waited for on the offload pool, off the event loop
    (``decoding.examine_in_child``: a JPEG with too many scans, a truncated picture, a
    decompression bomb or a picture past the child's time or memory limit is refused); a full
    pool is ``unavailable`` (503). Nothing reaches the store or SQL before every check has
    passed."""
    if not is_participant(user_id, conversation_id):
        return None, Refusal("not_found", 404)
    # Counted before the body is read: every upload, kept or refused, is read, decoded and
    # thumbnailed (CHAT_UPLOAD_RATE_LIMIT per user).
    wait = services().upload_limiter.hit(f"upload:{user_id}")
    if wait:
        return None, Refusal("rate_limited", 429, round(wait, 3))
    # Unsent uploads are kept a day (CHAT_ATTACHMENT_ORPHAN_AGE): without a quota one account
    # could fill the disk. Checked before the body is read, and again as the row is written.
    usage = unsent_usage(user_id)
    end_transaction()  # no connection held while the body streams in and the image decodes
    if refusal := usage.refusal():
        return None, refusal
    file = read_file()
    if not isinstance(file, FileStorage):
        return None, Refusal("invalid", 400)
    limit = current_app.config["CHAT_MAX_ATTACHMENT_BYTES"]
    name, declared = clean_name(file.filename), _declared_type(file)
    with tempfile.NamedTemporaryFile(prefix="simplechat-upload-") as local:
        size = _copy_limited(file.stream, local, limit)
        if size is None:
            return None, Refusal("too_large", 413)
        if size == 0:
            return None, Refusal("empty", 400)
        if refusal := usage.refusal(size):
            return None, refusal
        local.flush()
        local.seek(0)
        kind = raster_type(local.read(HEAD_BYTES))
        image = None
        if kind is not None:
            gate = _decode_gate()
            try:
                if not gate.acquire(timeout=DECODE_WAIT):
                    raise Busy
                try:
                    config = current_app.config
                    image = offload(examine_in_child, local.name, kind,
                                    config["CHAT_MAX_JPEG_SCANS"],
                                    config["CHAT_IMAGE_DECODE_SECONDS"],
                                    config["CHAT_IMAGE_DECODE_MEMORY_MB"])
                finally:
                    gate.release()
            except Busy:
                log.warning("upload of %r refused: the offload pool is full", name)
                return None, Refusal("unavailable", 503)
            except BadImage as exc:
                log.info("upload of %r refused: %s", name, exc)
                return None, Refusal("invalid_image", 400)
        elif _looks_like_image(name, declared):
            return None, Refusal("invalid_image", 400)
        attachment = Attachment(
            id=secrets.token_hex(16), conversation_id=conversation_id, uploader_id=user_id,
            name=name, size=size,
            content_type=image.content_type if image else declared,
            width=image.width if image else None, height=image.height if image else None,
            has_thumbnail=image is not None)
        store = attachment_store()
        local.seek(0)
        store.save(attachment.id, local)
        if image is not None:
            store.save(attachment.id + ".thumb", io.BytesIO(image.thumbnail))
    try:
        if refusal := unsent_usage(user_id, lock=True).refusal(size):
            db.session.rollback()
            remove_files(attachment.id)
            return None, refusal
        db.session.add(attachment)
        db.session.commit()
    except Exception:
        db.session.rollback()
        remove_files(attachment.id)
        raise
    return attachment_payload(attachment), None


def _copy_limited(source, target, limit: int) -> int | None:
    """Copy at most ``limit`` bytes; None if there was more."""
    size = 0
    while chunk := source.read(1024 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        target.write(chunk)
    return size


def parse_ids(value: object) -> tuple[list[str] | None, str | None]:
    """The attachment ids a send names (None: the field is absent or empty), or an error code:
    ``invalid`` for a wrong shape or a repeated id, ``too_many`` past 10."""
    if value is None or value == []:
        return None, None
    if not isinstance(value, list):
        return None, "invalid"
    if len(value) > MAX_PER_MESSAGE:
        return None, "too_many"
    if not all(isinstance(v, str) and ATTACHMENT_ID.match(v) for v in value):
        return None, "invalid"
    if len(set(value)) != len(value):
        return None, "invalid"
    return list(value), None


def claim(sender_id: int, conversation_id: int, ids: list[str], message_id: str
          ) -> tuple[list[dict] | None, str | None]:
    """Attach the sender's unsent uploads to a message about to be sent, atomically; their
    payloads in the order given, or ``invalid`` (unknown, another conversation's or another
    user's) or ``already_sent``."""
    rows = {a.id: a for a in db.session.scalars(select(Attachment).where(Attachment.id.in_(ids)))}
    if len(rows) != len(ids) or any(
        a.uploader_id != sender_id or a.conversation_id != conversation_id
        or a.deleted_at is not None for a in rows.values()
    ):
        db.session.rollback()
        return None, "invalid"
    if any(a.message_id is not None for a in rows.values()):
        db.session.rollback()
        return None, "already_sent"
    taken = db.session.execute(
        update(Attachment).where(Attachment.id.in_(ids), Attachment.message_id.is_(None),
                                 Attachment.uploader_id == sender_id,
                                 Attachment.conversation_id == conversation_id)
        .values(message_id=message_id).execution_options(synchronize_session=False)
    ).rowcount
    if taken != len(ids):  # another send took one in the meantime
        db.session.rollback()
        return None, "already_sent"
    db.session.commit()
    return [attachment_payload(rows[i]) for i in ids], None


def release(message_id: str) -> None:
    """Undo a claim whose send was refused: the uploads can be sent again."""
    db.session.execute(update(Attachment).where(Attachment.message_id == message_id)
                       .values(message_id=None).execution_options(synchronize_session=False))
    db.session.commit()


def attachments_for(message_ids: list[str]) -> dict[str, list[dict]]:
    """Each message's attachments from SQL, in upload order."""
    if not message_ids:
        return {}
    found: dict[str, list[dict]] = {}
    for a in db.session.scalars(
        select(Attachment).where(Attachment.message_id.in_(message_ids),
                                 Attachment.deleted_at.is_(None))
        .order_by(Attachment.created_at, Attachment.id)
    ):
        found.setdefault(a.message_id, []).append(attachment_payload(a))
    return found


def servable(user_id: int, attachment_id: str) -> Attachment | None:
    """The attachment if ``user_id`` may fetch it now: a participant of its conversation, its
    message not deleted; an upload not sent yet only to its uploader."""
    if not ATTACHMENT_ID.match(attachment_id):
        return None
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.deleted_at is not None:
        return None
    if not is_participant(user_id, attachment.conversation_id):
        return None
    if attachment.message_id is None:
        return attachment if attachment.uploader_id == user_id else None
    message = db.session.get(Message, attachment.message_id)
    if message is not None and message.deleted_at is not None:
        return None
    return attachment


def inline_type(attachment: Attachment, head: bytes) -> str | None:
    """The image type to serve a file as, inline, if it is a PNG, JPEG, GIF or WebP by its
    stored first bytes (``head``) as well as by its row; None: serve it as a download, of type
    application/octet-stream, whatever type was declared (a script or a style sheet from our
    own origin must never be taken as one)."""
    if not attachment.has_thumbnail or attachment.content_type not in RASTER_TYPES:
        return None
    return attachment.content_type if raster_type(head) == attachment.content_type else None


def withdraw(user_id: int, attachment_id: str) -> bool:
    """Delete an upload its uploader has not sent (removed from the composer): the row and its
    files, so it stops counting against the unsent quota. False for anything else: another
    user's, a sent one, or no such upload (a send that claims it first wins)."""
    if not ATTACHMENT_ID.match(attachment_id):
        return False
    gone = db.session.execute(
        delete(Attachment).where(Attachment.id == attachment_id,
                                 Attachment.uploader_id == user_id,
                                 Attachment.message_id.is_(None))
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if gone:
        remove_files(attachment_id)
    return bool(gone)


def remove_files_of(message_id: str) -> None:
    """Remove the stored files of a deleted message's attachments."""
    for attachment_id in db.session.scalars(
            select(Attachment.id).where(Attachment.message_id == message_id)):
        remove_files(attachment_id)


def remove_files(attachment_id: str) -> None:
    """Remove an attachment's file and thumbnail from the store (either may be gone already)."""
    store = attachment_store()
    for key in (attachment_id, attachment_id + ".thumb"):
        try:
            store.delete(key)
        except OSError:
            log.warning("could not remove attachment file %s", key, exc_info=True)


__all__ = ["MAX_PER_MESSAGE", "attachment_payload", "attachments_for", "claim", "clean_name",
           "inline_type", "parse_ids", "release", "remove_files", "remove_files_of", "servable",
           "unsent_usage", "upload", "withdraw"]
