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
from simplechat.infra.redis_client import Batch
from simplechat.infra.services import services
from simplechat.observability.metrics import count_refusal
from simplechat.realtime.emit import emit_to
from simplechat.realtime.presence import (
    audience,
    audience_from,
    heard_by,
    presence,
    queue_audience,
    queue_followers,
)
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


@dataclass(frozen=True)
class Arrival:
    """A socket ``arrive`` let in: who hears of its user's presence, and whether the user just
    came online (then they hear ``status_after(True)``)."""

    rooms: list[str]
    came_online: bool


@dataclass(frozen=True)
class Departure:
    """A socket ``depart`` forgot: its user, who hears of the user's presence, and the user's
    last-seen time when this was their last live socket (else None: nothing to announce)."""

    user: SocketUser
    rooms: list[str]
    last_seen: float | None


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


def arrive(sid: str, user: SocketUser) -> Arrival | None:
    """A connecting socket: counted for its user (None when the user already holds
    CHAT_MAX_SOCKETS_PER_USER sockets: refused), recorded for its login, marked live for
    presence and put in this process's registry. Returns who hears of the user's presence
    (realtime/presence.py: ``audience``), read before the presence change as ``announce``
    needs (empty when it could not be read), and whether the user just came online. With
    Redis all of it is one round trip (a Batch). When the count cannot be read (Redis down),
    the socket is let in uncounted: an outage must not lock everyone out."""
    cap, (store, login_id), tracker = socket_cap(), user.liveness(), presence()
    if services().redis is None:
        admitted = _admit_alone(cap, sid, user)
        if admitted:
            store.add_socket(login_id, sid)
            rooms = _quietly(audience, user.id, what="announced")
            came_online = _quietly(tracker.touch, user.id, sid, what="marked live",
                                   failed=False)
    else:
        batch = Batch(services().redis)
        admit = cap.queue_admit(batch, user.id, sid) if cap is not None else None
        recorded = len(batch)
        store.queue_add_socket(batch, login_id, sid)
        heard = queue_audience(batch, user.id)
        touched = tracker.queue_touch(batch, user.id, sid)
        followers = queue_followers(batch, user.id)
        replies = _run(batch)
        admitted = admit is None or _quietly(cap.admitted, user.id, sid, replies[admit],
                                             what="counted", failed=True)
        if not admitted:  # the user is online on the sockets that count: nothing to announce
            _quietly(store.drop_socket, login_id, sid, what="forgotten")
            _quietly(tracker.drop, user.id, sid, what="forgotten")
        elif any(isinstance(r, Exception) for r in replies[recorded:heard]):
            log.warning("socket %s of %s not recorded", sid, user.room)
        rooms = _quietly(audience_from, user.id, replies[heard], what="announced")
        rooms = heard_by(user.id, rooms or [], None if followers is None else replies[followers])
        came_online = _quietly(tracker.touched, replies[touched], what="marked live",
                               failed=False)
    if not admitted:
        count_refusal("max_sockets_per_user")
        return None
    registry = _registry()
    _sweep(registry, time.monotonic())
    registry[sid] = user
    return Arrival(rooms or [], came_online)


def depart(sid: str) -> Departure | None:
    """Forget a closed socket: its count, its login's record, its presence (its registry entry
    stays a little while for events still in flight). Returns its user, who hears of the
    user's presence (read before the presence change; empty when it could not be read) and,
    when no live socket of the user is left, the last-seen time; None for a socket already
    gone or never registered. With Redis, one round trip."""
    cap, user = socket_cap(), _registry().get(sid)
    if user is None or user.closed_at is not None:
        _release(cap, sid)  # a connect that failed after admission
        return None
    user.closed_at = time.monotonic()
    (store, login_id), tracker = user.liveness(), presence()
    if services().redis is None:
        _release(cap, sid)
        store.drop_socket(login_id, sid)
        rooms = _quietly(audience, user.id, what="announced")
        last_seen = _quietly(tracker.drop, user.id, sid, what="forgotten")
        return Departure(user, rooms or [], last_seen)
    batch = Batch(services().redis)
    if cap is not None:
        cap.queue_release(batch, sid)
    store.queue_drop_socket(batch, login_id, sid)
    heard = queue_audience(batch, user.id)
    dropped, now = tracker.queue_drop(batch, user.id, sid)
    followers = queue_followers(batch, user.id)
    replies = _run(batch)
    if any(isinstance(r, Exception) for r in replies[:heard]):  # the count, the record
        log.warning("socket %s of %s not forgotten", sid, user.room)
    rooms = _quietly(audience_from, user.id, replies[heard], what="announced")
    rooms = heard_by(user.id, rooms or [], None if followers is None else replies[followers])
    last_seen = _quietly(tracker.dropped, replies[dropped], now, what="forgotten")
    return Departure(user, rooms or [], last_seen)


def _admit_alone(cap, sid: str, user: SocketUser) -> bool:
    return cap is None or _quietly(cap.admit, user.id, sid, what="counted", failed=True)


def _release(cap, sid: str) -> None:
    if cap is not None:
        _quietly(cap.release, sid, what="released")


def _run(batch: Batch) -> list:
    try:
        return batch.run()
    except Exception as exc:  # Redis away: every step failed alike
        return [exc] * len(batch)


def _quietly(step: Callable, *args, what: str, failed=None):
    """``step(*args)``; ``failed`` when it raises (logged): the bookkeeping of sockets and
    presence must never refuse or break a socket."""
    try:
        return step(*args)
    except Exception:
        log.warning("socket bookkeeping: %s %r not %s", step.__name__, args[:2], what,
                    exc_info=True)
        return failed


def enter_rooms(sid: str, rooms: list[str]) -> None:
    """Put a socket of this process in ``rooms``. With the room-scoped fan-out
    (realtime/fanout.py), the subscriptions they need are awaited together, not one after
    another."""
    server = socketio.server
    enter = getattr(server.manager, "enter_rooms", None)
    if enter is not None:
        enter(sid, NAMESPACE, rooms)
        return
    for name in rooms:
        server.enter_room(sid, name, namespace=NAMESPACE)


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
