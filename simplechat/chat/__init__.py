"""The browser's transport: the pages (``views``) and the Socket.IO events (``events``)."""

from simplechat.chat import (  # noqa: F401  (register on import)
    avatars,
    events,
    notification_settings,
    thread_events,
)
from simplechat.chat.views import bp

__all__ = ["bp"]
