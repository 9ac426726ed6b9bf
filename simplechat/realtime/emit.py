"""Emitting to rooms: the one place that calls ``socketio.emit``.

python-socketio reads ``to=[]`` (and ``to=None``) as "every connected socket"; here an empty list
of rooms reaches nobody.
"""

from __future__ import annotations

from collections.abc import Iterable

from simplechat.extensions import socketio
from simplechat.realtime.rooms import NAMESPACE


def emit_to(rooms: str | Iterable[str], event: str, data: object, *,
            skip_sid: str | None = None, local_only: bool = False) -> bool:
    """Send ``event`` to every socket in any of ``rooms`` (once per socket), on every process
    unless ``local_only``; returns whether anything was sent."""
    targets = [rooms] if isinstance(rooms, str) else list(dict.fromkeys(rooms))
    if not targets or not all(isinstance(t, str) and t for t in targets):
        if targets:
            raise ValueError(f"rooms must be non-empty strings: {targets!r}")
        return False
    extra = {"ignore_queue": True} if local_only else {}
    socketio.emit(event, data, to=targets[0] if len(targets) == 1 else targets,
                  skip_sid=skip_sid, namespace=NAMESPACE, **extra)
    return True
