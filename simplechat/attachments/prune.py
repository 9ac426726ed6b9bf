"""Removing attachments nobody can fetch any more: uploads never sent (older than
``CHAT_ATTACHMENT_ORPHAN_AGE``) and the files of deleted messages, rows and stored files both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from simplechat.attachments.records import remove_files
from simplechat.extensions import db
from simplechat.models import Attachment, utcnow

BATCH = 500  # rows per transaction


@dataclass(frozen=True)
class Pruned:
    unsent: int  # uploads never sent, older than the age
    of_deleted: int  # attachments of deleted messages


def prune_attachments(older_than: timedelta | None = None) -> Pruned:
    """Delete the rows and files of unsent uploads older than ``older_than`` (default
    ``CHAT_ATTACHMENT_ORPHAN_AGE`` seconds), and of every attachment of a deleted message.

    Each batch of rows is locked, deleted and committed before its files are removed, so a send
    claiming an old upload at the same moment either gets it (and the upload is kept) or is
    refused; a file is never removed while a row still offers it."""
    if older_than is None:
        older_than = timedelta(seconds=current_app.config["CHAT_ATTACHMENT_ORPHAN_AGE"])
    cutoff = utcnow() - older_than
    unsent = _prune_where(Attachment.message_id.is_(None), Attachment.created_at < cutoff)
    of_deleted = _prune_where(Attachment.deleted_at.is_not(None))
    return Pruned(unsent, of_deleted)


def _prune_where(*conditions) -> int:
    removed = 0
    while True:
        ids = list(db.session.scalars(
            select(Attachment.id).where(*conditions).order_by(Attachment.id).limit(BATCH)
            .with_for_update(skip_locked=True)))
        if not ids:
            db.session.rollback()
            return removed
        db.session.execute(delete(Attachment).where(Attachment.id.in_(ids))
                           .execution_options(synchronize_session=False))
        db.session.commit()
        for attachment_id in ids:
            remove_files(attachment_id)
        removed += len(ids)
        if len(ids) < BATCH:
            return removed
