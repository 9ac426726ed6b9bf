"""Your own data: one export a day, built by a Celery task into a zip (``messages.jsonl``, one
line per message you sent with its conversation's title; ``profile.json``; ``files/``, the
files you uploaded and sent), kept in the attachment store for EXPORT_DAYS and downloaded by
its owner alone. A periodic task removes expired ones."""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
import zipfile
from datetime import datetime, timedelta

from celery import shared_task
from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from simplechat.answers import TIMESTAMP_FORMAT, error
from simplechat.attachments.store import attachment_store
from simplechat.extensions import db, end_transaction
from simplechat.infra.celery_app import DATABASE_RETRY
from simplechat.infra.offload import offload
from simplechat.models import (
    EXPORT_FAILED,
    EXPORT_PENDING,
    EXPORT_READY,
    Attachment,
    Conversation,
    DataExport,
    Message,
    User,
    utcnow,
)
from simplechat.observability.activity import record_activity, record_error

log = logging.getLogger(__name__)

EXPORT_DAYS = 7  # how long a download link works
BATCH = 1000  # messages read at a time
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _when(moment: datetime | None) -> str | None:
    return moment.strftime(TIMESTAMP_FORMAT) if moment is not None else None


def _seconds_to_tomorrow(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


def start_export(user: User) -> dict:
    """Queue an export of the user's data: ``{"ok": true, "export": {...}}``, or
    ``rate_limited`` (with ``retry_after``, the seconds until the next UTC day) when one was
    asked for today already, ``unavailable`` when the task could not be queued."""
    now = utcnow()
    if _eager():  # no beat runs on the embedded default: old exports go as new ones come
        remove_expired_exports()
    export = DataExport(user_id=user.id, day=now.strftime("%Y-%m-%d"), status=EXPORT_PENDING,
                        created_at=now, expires_at=now + timedelta(days=EXPORT_DAYS))
    db.session.add(export)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return error("rate_limited", retry_after=float(_seconds_to_tomorrow(now)))
    export_id = export.id
    record_activity("data_export_requested", user.id, {"export_id": export_id})
    try:
        build_data_export.delay(export_id)
    except Exception:
        log.warning("data export %s not queued", export_id, exc_info=True)
        _fail(export_id)
        return error("unavailable")
    db.session.expire_all()
    return {"ok": True, "export": db.session.get(DataExport, export_id)}


def _eager() -> bool:
    return bool(current_app.extensions["celery"].conf.task_always_eager)


def user_exports(user_id: int) -> list[DataExport]:
    """The user's exports not expired yet, newest first."""
    return list(db.session.scalars(select(DataExport).where(
        DataExport.user_id == user_id, DataExport.expires_at > utcnow())
        .order_by(DataExport.id.desc())))


def export_entry(export: DataExport, url: str | None) -> dict:
    return {"id": export.id, "status": export.status, "created_at": _when(export.created_at),
            "expires_at": _when(export.expires_at),
            "url": url if export.status == EXPORT_READY else None}


def downloadable(user_id: int, export_id: int) -> DataExport | None:
    """The user's own ready export that has not expired; None for anything else (another
    user's included)."""
    export = db.session.get(DataExport, export_id)
    if (export is None or export.user_id != user_id or export.status != EXPORT_READY
            or export.expires_at <= utcnow() or not export.file_key):
        return None
    return export


# --------------------------------------------------------------------------- the tasks


@shared_task(name="simplechat.build_data_export", **DATABASE_RETRY)
def build_data_export(export_id: int) -> str:
    """Write the zip of a pending export and mark it ready (or failed: its day is given back,
    so the user may ask again). SQL is read here; the zip (compression, copying the files) is
    written on the CPU pool from plain values, off the event loop when tasks run inline."""
    export = db.session.get(DataExport, export_id)
    if export is None or export.status != EXPORT_PENDING:
        return "gone"
    user = db.session.get(User, export.user_id)
    key = f"{secrets.token_hex(16)}.zip"
    try:
        profile = {"id": user.id, "username": user.username, "first_name": user.first_name,
                   "last_name": user.last_name, "email": user.email,
                   "created_at": _when(user.created_at)}
        lines = list(_message_lines(user.id))
        files = [(attachment.id, _UNSAFE.sub("_", attachment.name)[-100:] or "file")
                 for attachment in db.session.scalars(select(Attachment).where(
                     Attachment.uploader_id == user.id, Attachment.message_id.is_not(None),
                     Attachment.deleted_at.is_(None)).order_by(Attachment.created_at))]
        end_transaction()  # no database connection held while the zip is written
        offload(_write_zip, attachment_store(), key, profile, lines, files)
    except Exception as exc:
        db.session.rollback()
        record_error("profile.export.build_data_export", exc, export.user_id)
        _fail(export_id)
        return EXPORT_FAILED
    export = db.session.get(DataExport, export_id)
    export.status, export.file_key = EXPORT_READY, key
    db.session.commit()
    return EXPORT_READY


def _fail(export_id: int) -> None:
    export = db.session.get(DataExport, export_id)
    if export is not None:
        export.status, export.day = EXPORT_FAILED, None
        db.session.commit()


def _write_zip(store, key: str, profile: dict, lines: list[str],
               files: list[tuple[str, str]]) -> None:
    """The zip from plain values, saved in the store under ``key`` (on a thread of the pool:
    no ORM object, no app context here)."""
    with tempfile.TemporaryFile() as raw:
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("profile.json", json.dumps(profile, ensure_ascii=False, indent=2))
            with archive.open("messages.jsonl", "w") as out:
                for line in lines:
                    out.write(line.encode("utf-8"))
            for attachment_id, name in files:
                try:
                    with store.open(attachment_id) as source, archive.open(
                            f"files/{attachment_id}-{name}", "w") as target:
                        while chunk := source.read(1024 * 1024):
                            target.write(chunk)
                except FileNotFoundError:
                    log.warning("attachment %s missing from the store", attachment_id)
        raw.seek(0)
        store.save(key, raw)


def _message_lines(user_id: int):
    """One JSON line per message the user sent and did not delete, oldest first, read a batch
    at a time (keyset on the id, which sorts in time order)."""
    after = ""
    while True:
        rows = db.session.execute(
            select(Message, Conversation.title, Conversation.visibility)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.sender_id == user_id, Message.deleted_at.is_(None),
                   Message.kind == "text", Message.id > after)
            .order_by(Message.id).limit(BATCH)).all()
        if not rows:
            return
        files: dict[str, list[dict]] = {}
        for attachment in db.session.scalars(select(Attachment).where(
                Attachment.message_id.in_([m.id for m, _, _ in rows]),
                Attachment.deleted_at.is_(None))):
            files.setdefault(attachment.message_id, []).append(
                {"id": attachment.id, "name": attachment.name})
        for message, title, visibility in rows:
            yield json.dumps({
                "id": message.id, "conversation_id": message.conversation_id,
                "conversation_title": title, "conversation_visibility": visibility,
                "sent_at": _when(message.created_at), "edited_at": _when(message.edited_at),
                "text": message.text, "thread_id": message.thread_id,
                "reply_to": message.reply_to_id, "attachments": files.get(message.id, [])},
                ensure_ascii=False) + "\n"
        after = rows[-1][0].id


@shared_task(name="simplechat.remove_expired_exports", **DATABASE_RETRY)
def remove_expired_exports() -> int:
    """Delete the exports past their time, rows and files (Celery beat runs it hourly)."""
    expired = list(db.session.scalars(select(DataExport).where(
        DataExport.expires_at <= utcnow())))
    if not expired:
        return 0
    keys = [export.file_key for export in expired if export.file_key]
    db.session.execute(delete(DataExport).where(DataExport.id.in_([e.id for e in expired]))
                       .execution_options(synchronize_session=False))
    db.session.commit()
    store = attachment_store()
    for key in keys:  # after the commit: no row offers a file that is gone
        store.delete(key)
    return len(expired)


def open_export(export: DataExport):
    """The export's zip, open for reading."""
    return attachment_store().open(export.file_key)


def export_file_name(export: DataExport) -> str:
    return f"simplechat-export-{export.created_at:%Y-%m-%d}.zip"


__all__ = ["build_data_export", "downloadable", "export_entry", "export_file_name",
           "open_export", "remove_expired_exports", "start_export", "user_exports"]
