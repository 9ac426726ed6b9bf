"""The browser's transport: the pages (``views``) and the Socket.IO events (``events``)."""

from simplechat.chat import avatars, events  # noqa: F401  (register on import)
from simplechat.chat.views import bp

__all__ = ["bp"]
