"""Who each open ``/chat`` socket of this process belongs to, and closing the sockets of a
login that has ended, on whichever web process holds them.

A socket's user and login (a session, or an API token) are read once, at connect, by the auth
feature, which hands over the login's cache and how to look the login up again. Each event
then checks the login against that cache (no SQL) at most every SESSION_CHECK_INTERVAL seconds;
an ended login is also pushed: its sockets get ``session_ended`` and are closed at once.

A user holds at most CHAT_MAX_SOCKETS_PER_USER sockets on all processes together
(``admit_socket`` at connect, realtime/socket_cap.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from simplechat.extensions import socketio
from simplechat.infra.liveness import LivenessStore
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import NAMESPACE
from simplechat.realtime.socket_cap import socket_cap

log = logging.getLogger(__name__)


def session_room(session_id: int) -> str:
    return f"session:{session_id}"


def token_room(token_id: int) -> str:
    return f"token:{token_id}"


@dataclass
class SocketUser:
    """The user behind one socket, as the socket's events see it (``current_user`` there)."""

    id: int
    username: str
    full_name: str
    session_id: int  # 0 for a socket that connected with an API token
    store: LivenessStore  # the cache that knows this socket's login (session's or token's)
    identify: Callable[[int], dict | None]  # the login's identity by its id; None once ended
    checked_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    token_id: int | None = None  # the API token it connected with, if any
    running: set[str] = field(default_factory=set)  # its events that run one at a time
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def room(self) -> str:
        """The room of the login this socket belongs to: its session's, or its token's."""
        return token_room(self.token_id) if self.token_id else session_room(self.session_id)

    @property
    def login_id(self) -> int:
        """The id of this socket's login in its cache: the token's, else the session's."""
        return self.token_id or self.session_id

    def liveness(self) -> tuple[LivenessStore, int]:
        """The cache that knows this socket's login, and the login's id in it."""
        return self.store, self.login_id

    def identity(self) -> dict | None:
        return self.identify(self.login_id)


# A closed socket's entry is kept this long: events it sent just before closing (a message sent
# as a tab closes) are handled on greenlets of their own and may run after the disconnect.
CLOSED_GRACE = 30.0


def _registry() -> dict[str, SocketUser]:
    return current_app.extensions.setdefault("simplechat.sockets", {})


def _sweep(registry: dict[str, SocketUser], now: float) -> None:
    last = current_app.extensions.get("simplechat.sockets.swept", 0.0)
    if now - last < CLOSED_GRACE:
        return
    current_app.extensions["simplechat.sockets.swept"] = now
    for sid in [sid for sid, u in list(registry.items())
                if u.closed_at is not None and now - u.closed_at > CLOSED_GRACE]:
        registry.pop(sid, None)


def admit_socket(sid: str, user: SocketUser) -> bool:
    """Count a connecting socket for its user; False if the user already holds
    CHAT_MAX_SOCKETS_PER_USER sockets (the connect is refused). When the count cannot be read
    (Redis down), the socket is let in uncounted: an outage must not lock everyone out."""
    cap = socket_cap()
    if cap is None:
        return True
    try:
        return cap.admit(user.id, sid)
    except Exception:
        log.warning("socket %s of user %s let in uncounted", sid, user.id, exc_info=True)
        return True


def release_socket(sid: str) -> None:
    """Stop counting a socket for its user: it closed, or its connect failed after admission
    (whether or not its registry entry is still there)."""
    cap = socket_cap()
    if cap is None:
        return
    try:
        cap.release(sid)
    except Exception:
        log.warning("socket %s still counted for its user", sid, exc_info=True)


def register_socket(sid: str, user: SocketUser) -> None:
    registry = _registry()
    _sweep(registry, time.monotonic())
    registry[sid] = user
    store, login_id = user.liveness()
    try:
        store.add_socket(login_id, sid)
    except Exception:
        log.warning("socket %s of %s not recorded", sid, user.room, exc_info=True)


def unregister_socket(sid: str) -> SocketUser | None:
    """Forget a closed socket (its entry stays a little while for events still in flight)."""
    release_socket(sid)
    user = _registry().get(sid)
    if user is not None and user.closed_at is None:
        user.closed_at = time.monotonic()
        store, login_id = user.liveness()
        try:
            store.drop_socket(login_id, sid)
        except Exception:
            log.warning("socket %s of %s not forgotten", sid, user.room)
        return user
    return None


def socket_user(sid: str) -> SocketUser | None:
    """The user of a socket whose session is still live, else None (the caller refuses)."""
    user = _registry().get(sid)
    if user is None:
        return None
    now = time.monotonic()
    if now - user.checked_at >= current_app.config["SESSION_CHECK_INTERVAL"]:
        identity = user.identity()
        if identity is None or identity["user_id"] != user.id:
            _registry().pop(sid, None)
            return None
        user.username, user.full_name = identity["username"], identity["name"]
        user.checked_at = now
    return user


def close_login_sockets(target: str, store: LivenessStore, login_id: int, reason: str) -> int:
    """Tell a login's sockets (in room ``target``; ``store`` knows them) why it ended, then
    close them, on every process.

    This process's sockets get ``session_ended`` straight away, before their close; the others'
    processes get the event and then the close through the message queue, in that order.
    Returns how many sockets were asked to close."""
    server = socketio.server
    local = {sid for sid, _eio in server.manager.get_participants(NAMESPACE, target)}
    try:
        everywhere = store.sockets(login_id)
    except Exception:
        log.warning("sockets of %s unknown beyond this process", target, exc_info=True)
        everywhere = set()
    registry = _registry()
    for sid in local:
        if sid in registry:
            registry[sid].checked_at = float("-inf")  # an event still in flight checks again
        emit_to(sid, "session_ended", {"reason": reason}, local_only=True)
    remote = everywhere - local
    if remote:
        emit_to(target, "session_ended", {"reason": reason})
    for sid in local | remote:
        server.disconnect(sid, namespace=NAMESPACE)
    return len(local | remote)
