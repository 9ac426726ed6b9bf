"""Celery tasks of the send path's SQL side: the write buffer's flush, edits, deletions and
reactions (task names are kept across versions: queued tasks must still resolve)."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from sqlalchemy.exc import DBAPIError, IntegrityError

from simplechat.attachments.records import remove_files_of
from simplechat.extensions import db
from simplechat.infra.celery_app import DATABASE_RETRY
from simplechat.infra.ids import message_id_time
from simplechat.infra.write_buffer import write_buffer
from simplechat.messaging.storage import apply_message_change, apply_reaction, store_new_messages
from simplechat.observability.activity import write_error
from simplechat.observability.metrics import message_write_failed, message_written
from simplechat.webhooks.delivery import queue_deliveries

log = logging.getLogger(__name__)


@shared_task(name="simplechat.flush_writes", **DATABASE_RETRY)
def flush_writes(take_over: bool = False) -> int:
    """Store what waits in the write buffer, a batch at a time; returns the rows stored.

    A database that is down (OperationalError) leaves the batch in the buffer's processing
    list and retries this task with backoff; any other error ends the run with the batch still
    there, for the next flush. A run stops after a bounded number of batches and queues the
    next one.
    """
    flushed = write_buffer().flush(store_batch, take_over=take_over)
    if flushed.more:
        flush_writes.apply_async()
    elif flushed.recheck_in is not None:
        # Another flusher holds the lease over a batch: should it have died, this run stores it.
        flush_writes.apply_async(countdown=flushed.recheck_in)
    return flushed.stored


@shared_task(name="simplechat.store_message", **DATABASE_RETRY)
def store_message(payload: dict) -> int:
    """Write one message to SQL (idempotent on its id).

    The write path before the write buffer; kept for tasks queued by an older version."""
    return store_batch([payload])


def store_batch(payloads: list[dict]) -> int:
    """Store messages (idempotent on their ids); returns how many rows were new.

    A batch the database refuses (a conversation or sender gone) is stored message by message,
    and each refused message is recorded and dropped: retrying cannot help it."""
    try:
        written = _store(payloads)
    except IntegrityError:
        db.session.rollback()
        if len(payloads) == 1:
            _refused(payloads[0])
            return 0
        return sum(store_batch([payload]) for payload in payloads)
    except (KeyError, TypeError, ValueError):
        db.session.rollback()
        if len(payloads) == 1:
            _refused(payloads[0], "malformed")
            return 0
        return sum(store_batch([payload]) for payload in payloads)
    return written


def _store(payloads: list[dict]) -> int:
    try:
        new_ids = store_new_messages(payloads)
    except IntegrityError:
        raise
    except DBAPIError:
        db.session.rollback()
        message_write_failed("database")
        raise
    for message_id in new_ids:
        message_written(message_id_time(message_id))
    _queue_webhooks(payloads, new_ids)
    return len(new_ids)


def _queue_webhooks(payloads: list[dict], new_ids) -> None:
    """Outgoing webhooks get each message once, when it is first stored."""
    new = set(new_ids)
    try:
        queue_deliveries([p for p in payloads if p.get("id") in new])
    except Exception:
        log.exception("webhook deliveries of %d message(s) not queued", len(new))


def _refused(payload: object, why: str = "refused by the database") -> None:
    message_write_failed("refused")
    message_id = payload.get("id") if isinstance(payload, dict) else None
    sender = payload.get("sender") if isinstance(payload, dict) else None
    log.exception("message %s could not be stored", message_id)
    write_error("tasks.store_message", "IntegrityError" if why.startswith("refused")
                 else "InvalidPayload", f"message {message_id} {why}", None,
                 sender if isinstance(sender, int) else None)


@shared_task(name="simplechat.store_message_change", **DATABASE_RETRY)
def store_message_change(payload: dict, changed_at: str, previous: str | None = None) -> bool:
    """Write an edit or a deletion to SQL (idempotent; order-independent); an edit keeps the
    text it replaced, ``previous``."""
    try:
        changed = apply_message_change(payload, datetime.fromisoformat(changed_at), previous)
    except DBAPIError:
        db.session.rollback()
        raise
    if payload.get("deleted"):
        remove_files_of(payload["id"])
    return changed


@shared_task(name="simplechat.store_reaction", **DATABASE_RETRY)
def store_reaction(payload: dict, user_id: int, emoji: str, on: bool) -> bool:
    """Write a reaction set or taken back (idempotent); stores the message first if needed."""
    try:
        return apply_reaction(payload, user_id, emoji, on)
    except DBAPIError:
        db.session.rollback()
        raise


