"""Celery tasks: the SQL side of the send path and the two log tables."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from .chat.ids import message_id_time
from .extensions import db
from .metrics import message_write_failed, message_written
from .models import GenericActivityLog, GenericErrorLog
from .storage import apply_message_change, store_messages

log = logging.getLogger(__name__)

# A database that is down or restarting is retried with backoff for about half an hour.
_RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 1, "retry_backoff_max": 30,
          "retry_jitter": True, "max_retries": 60}


@shared_task(name="simplechat.store_message", **_RETRY)
def store_message(payload: dict) -> int:
    """Write one message to SQL (idempotent on its id)."""
    try:
        written = store_messages([payload])
    except IntegrityError:
        # The conversation or sender is gone: retrying cannot help; record it and drop the write.
        db.session.rollback()
        message_write_failed("refused")
        log.exception("message %s could not be stored", payload.get("id"))
        _write_error("tasks.store_message", "IntegrityError",
                     f"message {payload.get('id')} refused by the database", None,
                     payload.get("sender"))
        return 0
    except DBAPIError:
        db.session.rollback()
        message_write_failed("database")
        raise
    if written:
        message_written(message_id_time(payload["id"]))
    return written


@shared_task(name="simplechat.store_message_change", **_RETRY)
def store_message_change(payload: dict, changed_at: str) -> bool:
    """Write an edit or a deletion to SQL (idempotent; order-independent)."""
    try:
        return apply_message_change(payload, datetime.fromisoformat(changed_at))
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
