"""Ending every open socket of a user, on whichever web process holds it.

The presence tracker knows each user's live sids on every process; a server-side disconnect of
a sid held elsewhere travels through the Socket.IO message queue. Without Redis there is one
process, and its own rooms are the whole picture.
"""

from __future__ import annotations

import logging

from ..extensions import socketio
from .conversations import NAMESPACE, user_room
from .presence import presence

log = logging.getLogger(__name__)


def disconnect_user(user_id: int, reason: str = "deactivated") -> int:
    """Close every open ``/chat`` socket of a user, on whichever process holds it.

    The client first gets ``session_ended`` with the reason, then the server-side disconnect
    (after which the Socket.IO client does not reconnect by itself). Returns how many sockets
    were asked to close. Call it after the change that makes the user inactive is committed:
    a reconnect is then refused, and so is any event still in flight.
    """
    server = socketio.server
    sids = {sid for sid, _eio in server.manager.get_participants(NAMESPACE, user_room(user_id))}
    tracker = presence()
    try:
        sids.update(tracker.sids(user_id))
    except Exception:
        log.warning("live sockets of user %s unknown beyond this process", user_id, exc_info=True)
    socketio.emit("session_ended", {"reason": reason}, to=user_room(user_id),
                  namespace=NAMESPACE)
    for sid in sids:
        server.disconnect(sid, namespace=NAMESPACE)
        try:
            tracker.drop(user_id, sid)
        except Exception:
            log.warning("presence of socket %s not cleared", sid, exc_info=True)
    return len(sids)
