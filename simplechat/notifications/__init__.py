"""Notifications with the tab closed: levels per conversation, the user's settings, who is
notified of a stored message, and Web Push to their devices."""

from __future__ import annotations

from flask import Flask

from simplechat.messaging.storage import STORED_LISTENERS
from simplechat.notifications.delivery import queue_notifications


def init_notifications(app: Flask) -> None:
    """Newly stored messages are handed to the notification tasks (queued, never run, inside
    the batch's transaction)."""
    app.extensions.setdefault(STORED_LISTENERS, []).append(queue_notifications)
