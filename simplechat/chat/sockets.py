"""Which open sockets belong to a user, and ending all of them, on every web process.

Each connect is recorded in a Redis set per user (``<prefix>sockets:<user id>``); ending a
user's sessions disconnects every recorded sid through the Socket.IO message queue, which
reaches the process that holds it. Without Redis there is one process, and its own rooms are
the whole picture.
"""

from __future__ import annotations

import logging

from ..extensions import socketio
from ..services import services
from .conversations import NAMESPACE, user_room

log = logging.getLogger(__name__)

SOCKETS_TTL = 24 * 3600  # a process killed without cleanup leaves sids that expire


def _key(user_id: int) -> str:
    from flask import current_app

    return f"{current_app.config['REDIS_KEY_PREFIX']}sockets:{user_id}"


def remember_socket(user_id: int, sid: str) -> None:
    redis = services().redis
    if redis is None:
        return
    try:
        with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(_key(user_id), sid)
            pipe.expire(_key(user_id), SOCKETS_TTL)
            pipe.execute()
    except Exception:
        log.warning("could not record socket %s of user %s", sid, user_id, exc_info=True)


def forget_socket(user_id: int, sid: str) -> None:
    redis = services().redis
    if redis is None:
        return
    try:
        redis.srem(_key(user_id), sid)
    except Exception:
        log.warning("could not forget socket %s of user %s", sid, user_id, exc_info=True)


def disconnect_user(user_id: int, reason: str = "deactivated") -> int:
    """Close every open ``/chat`` socket of a user, on whichever process holds it.

    The client first gets ``session_ended`` with the reason, then the server-side disconnect
    (after which the Socket.IO client does not reconnect by itself). Returns how many sockets
    were asked to close. Call it after the change that makes the user inactive is committed:
    a reconnect is then refused, and so is any event still in flight.
    """
    server = socketio.server
    sids = {sid for sid, _eio in server.manager.get_participants(NAMESPACE, user_room(user_id))}
    redis = services().redis
    if redis is not None:
        sids.update(s.decode() if isinstance(s, bytes) else s
                    for s in redis.smembers(_key(user_id)))
    socketio.emit("session_ended", {"reason": reason}, to=user_room(user_id),
                  namespace=NAMESPACE)
    for sid in sids:
        server.disconnect(sid, namespace=NAMESPACE)
    if redis is not None:
        redis.delete(_key(user_id))
    return len(sids)
