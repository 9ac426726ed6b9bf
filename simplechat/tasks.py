"""Celery tasks: the SQL side of the send path and the two log tables."""

from __future__ import annotations

import http.client
import logging
from datetime import datetime

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .chat.ids import message_id_time
from .chat.write_buffer import write_buffer
from .extensions import db
from .metrics import message_write_failed, message_written
from .models import GenericActivityLog, GenericErrorLog, Webhook
from .storage import apply_message_change, apply_reaction, store_new_messages

log = logging.getLogger(__name__)

# A database that is down or restarting is retried with backoff for about half an hour.
_RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 1, "retry_backoff_max": 30,
          "retry_jitter": True, "max_retries": 60}


@shared_task(name="simplechat.flush_writes", **_RETRY)
def flush_writes(take_over: bool = False) -> int:
    """Store what waits in the write buffer, a batch at a time; returns the rows stored.

    A database error leaves the batch in the buffer's processing list and retries this task
    with backoff. A run stops after a bounded number of batches and queues the next one.
    """
    flushed = write_buffer().flush(store_batch, take_over=take_over)
    if flushed.more:
        flush_writes.apply_async()
    elif flushed.recheck_in is not None:
        # Another flusher holds the lease over a batch: should it have died, this run stores it.
        flush_writes.apply_async(countdown=flushed.recheck_in)
    return flushed.stored


@shared_task(name="simplechat.store_message", **_RETRY)
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
    from .api.webhooks import queue_deliveries

    new = set(new_ids)
    try:
        queue_deliveries([p for p in payloads if p.get("id") in new])
    except Exception:
        log.exception("webhook deliveries of %d message(s) not queued", len(new))


@shared_task(name="simplechat.deliver_webhook", bind=True, max_retries=6)
def deliver_webhook(self, webhook_id: int, payload: dict) -> str:
    """POST one message to an outgoing webhook, signed; retried with backoff while the
    receiver is down or answers other than 2xx, then recorded as failed in GenericErrorLog."""
    from .api.webhooks import RETRY, backoff

    outcome = attempt_delivery(webhook_id, payload, self.request.retries, self.max_retries)
    if outcome == RETRY:
        raise self.retry(countdown=backoff(self.request.retries))
    return outcome


def attempt_delivery(webhook_id: int, payload: dict, retries: int, max_retries: int) -> str:
    """One try of a delivery: delivered, gone, refused, failed (the last try), or retry."""
    from .api.webhooks import OUTGOING, RETRY, UnsafeURL, delivery_body, post_signed

    hook = db.session.get(Webhook, webhook_id)
    if hook is None or hook.kind != OUTGOING:
        return "gone"
    url, secret, body = hook.url, hook.secret, delivery_body(hook, payload)
    db.session.remove()  # no database connection held while the receiver is slow
    try:
        status = post_signed(url, secret, body, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
        if 200 <= status < 300:
            return "delivered"
        problem = f"HTTP {status}"
    except UnsafeURL as exc:
        _write_error("tasks.deliver_webhook", "UnsafeURL", f"webhook {webhook_id}: {exc}",
                     None, None)
        return "refused"
    except (OSError, http.client.HTTPException) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if retries >= max_retries:
        _write_error("tasks.deliver_webhook", "WebhookDeliveryFailed",
                     f"webhook {webhook_id} ({url}): message {payload.get('id')} not delivered "
                     f"after {retries + 1} tries: {problem}", None, None)
        return "failed"
    log.info("webhook %s: try %d failed (%s); retrying", webhook_id, retries + 1, problem)
    return RETRY


def _refused(payload: object, why: str = "refused by the database") -> None:
    message_write_failed("refused")
    message_id = payload.get("id") if isinstance(payload, dict) else None
    sender = payload.get("sender") if isinstance(payload, dict) else None
    log.exception("message %s could not be stored", message_id)
    _write_error("tasks.store_message", "IntegrityError" if why.startswith("refused")
                 else "InvalidPayload", f"message {message_id} {why}", None,
                 sender if isinstance(sender, int) else None)


@shared_task(name="simplechat.store_message_change", **_RETRY)
def store_message_change(payload: dict, changed_at: str) -> bool:
    """Write an edit or a deletion to SQL (idempotent; order-independent)."""
    try:
        changed = apply_message_change(payload, datetime.fromisoformat(changed_at))
    except DBAPIError:
        db.session.rollback()
        raise
    if payload.get("deleted"):
        from .attachments.records import remove_files_of

        remove_files_of(payload["id"])
    return changed


@shared_task(name="simplechat.store_reaction", **_RETRY)
def store_reaction(payload: dict, user_id: int, emoji: str, on: bool) -> bool:
    """Write a reaction set or taken back (idempotent); stores the message first if needed."""
    try:
        return apply_reaction(payload, user_id, emoji, on)
    except DBAPIError:
        db.session.rollback()
        raise


@shared_task(name="simplechat.log_activity", **_RETRY)
def log_activity(action: str, user_id: int | None = None, detail: dict | None = None,
                 ip: str | None = None) -> None:
    db.session.add(GenericActivityLog(user_id=user_id, action=action, detail=detail, ip=ip))
    _commit()


@shared_task(name="simplechat.log_error", **_RETRY)
def log_error(where: str, error_type: str, message: str, traceback: str | None = None,
              user_id: int | None = None) -> None:
    _write_error(where, error_type, message, traceback, user_id)


def _write_error(where, error_type, message, traceback, user_id) -> None:
    db.session.add(GenericErrorLog(
        where=where[:200], error_type=error_type[:200], message=message,
        traceback=traceback, user_id=user_id,
    ))
    _commit()


def _commit() -> None:
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
