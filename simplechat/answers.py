"""What every transport answers with: the error ack and the wire's time format.

Every feature imports this module; it imports nothing of Simple Chat. Error codes are short
stable strings that clients switch on (docs/PROTOCOL.md lists them): ``invalid``,
``forbidden``, ``not_found``, ``empty``, ``too_long``, ``too_many``, ``rate_limited``,
``unavailable``, ``conflict``, ``unauthorized``, ``not_group``, ``not_allowed``,
``archived``, ``edit_window_closed``, ``already_sent``, ``unknown_event``, ``internal``.
"""

from __future__ import annotations

# Every timestamp on the wire: UTC, 'YYYY-MM-DD HH:MM:SS'.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def error(code: str, **extra: object) -> dict:
    """A refused event's ack: ``{"ok": false, "error": code, ...extra}``."""
    return {"ok": False, "error": code, **extra}
