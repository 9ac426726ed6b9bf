"""Recording activity and unexpected errors: queued to Celery, never breaking the caller."""

from __future__ import annotations

import logging
import traceback as tb

from flask import has_request_context, request

log = logging.getLogger(__name__)


def client_ip() -> str | None:
    if not has_request_context():
        return None
    return (request.remote_addr or "")[:45] or None


def record_activity(action: str, user_id: int | None = None, detail: dict | None = None) -> None:
    """Queue a GenericActivityLog row. A broker outage is logged, not raised."""
    from .tasks import log_activity

    try:
        log_activity.delay(action, user_id, detail, client_ip())
    except Exception:
        log.warning("activity %s for user %s not recorded", action, user_id, exc_info=True)


def record_error(where: str, exc: BaseException, user_id: int | None = None) -> None:
    """Log an unexpected error once, and queue a GenericErrorLog row for it."""
    from .tasks import log_error

    log.error("unexpected error in %s", where, exc_info=exc)
    text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
    try:
        log_error.delay(where, type(exc).__name__, str(exc)[:2000], text[-20000:], user_id)
    except Exception:
        log.warning("error in %s not recorded in GenericErrorLog", where, exc_info=True)
