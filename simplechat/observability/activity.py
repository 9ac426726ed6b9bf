"""Recording activity and unexpected errors: queued to Celery, never breaking the caller, and
the tasks that write them to the two log tables."""

from __future__ import annotations

import logging
import traceback as tb

from celery import shared_task
from flask import has_request_context, request

from simplechat.extensions import db
from simplechat.infra.celery_app import DATABASE_RETRY
from simplechat.models import GenericActivityLog, GenericErrorLog

log = logging.getLogger(__name__)


def client_ip() -> str | None:
    if not has_request_context():
        return None
    return (request.remote_addr or "")[:45] or None


def record_activity(action: str, user_id: int | None = None, detail: dict | None = None) -> None:
    """Queue a GenericActivityLog row. A broker outage is logged, not raised."""
    try:
        log_activity.delay(action, user_id, detail, client_ip())
    except Exception:
        log.warning("activity %s for user %s not recorded", action, user_id, exc_info=True)


def record_error(where: str, exc: BaseException, user_id: int | None = None) -> None:
    """Log an unexpected error once, and queue a GenericErrorLog row for it."""
    log.error("unexpected error in %s", where, exc_info=exc)
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    try:
        log_error.delay(where, type(exc).__name__, str(exc)[:2000], text[-20000:], user_id)
    except Exception:
        log.warning("error in %s not recorded in GenericErrorLog", where, exc_info=True)


@shared_task(name="simplechat.log_activity", **DATABASE_RETRY)
def log_activity(action: str, user_id: int | None = None, detail: dict | None = None,
                 ip: str | None = None) -> None:
    db.session.add(GenericActivityLog(user_id=user_id, action=action, detail=detail, ip=ip))
    _commit()


@shared_task(name="simplechat.log_error", **DATABASE_RETRY)
def log_error(where: str, error_type: str, message: str, traceback: str | None = None,
              user_id: int | None = None) -> None:
    write_error(where, error_type, message, traceback, user_id)


def write_error(where: str, error_type: str, message: str, traceback: str | None,
                user_id: int | None) -> None:
    """Write a GenericErrorLog row now (inside a task: it is already off the request)."""
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
