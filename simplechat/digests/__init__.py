"""The missed-message digest: direct messages and mentions still unread after a user's
``email_delay_minutes`` while they are offline, mailed once, one mail per user per window, with
a one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

from flask import Flask

from simplechat.digests.missed import record_missed
from simplechat.digests.sweep import schedule_sweeps
from simplechat.digests.unsubscribe import bp
from simplechat.messaging.storage import STORED_LISTENERS


def init_digests(app: Flask) -> None:
    """Stored messages are noted for the digest (inside their batch's transaction); the sweep
    runs under Celery beat, or in this process when tasks run inline. (The unsubscribe page,
    ``bp``, is registered with the other blueprints.)"""
    app.extensions.setdefault(STORED_LISTENERS, []).append(record_missed)
    schedule_sweeps(app)


__all__ = ["bp", "init_digests"]
