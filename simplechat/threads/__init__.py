"""Threads: reading a thread, following threads, per-thread read markers and the followed
threads with their unread counts. Replies are sent through the send path (messaging.send)."""

from __future__ import annotations

from flask import Flask

from simplechat.messaging.storage import STORED_LISTENERS
from simplechat.threads.following import follow_stored


def init_threads(app: Flask) -> None:
    """Stored replies make their people follow their threads (in the batch's transaction)."""
    app.extensions.setdefault(STORED_LISTENERS, []).append(follow_stored)
