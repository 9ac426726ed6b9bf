"""Socket.IO handlers of the ``/chat`` namespace: parse, call, answer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from flask import current_app, g, request
from flask_socketio import ConnectionRefusedError as ConnectRefused
from flask_socketio import join_room, leave_room

from simplechat.answers import error
from simplechat.auth.sessions import socket_login
from simplechat.auth.tokens import socket_token_login
from simplechat.conversations.groups import (
    add_participants,
    leave_conversation,
    rename_conversation,
)
from simplechat.extensions import end_transaction, socketio
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import (
    membership,
    membership_refusal,
    participant_ids,
    valid_conversation_id,
)
from simplechat.messaging.edits import delete_message, edit_message
from simplechat.messaging.history import messages_after, recent_messages
from simplechat.messaging.reactions import react
from simplechat.messaging.read_state import mark_read, read_markers
from simplechat.messaging.send import send_message
from simplechat.observability.activity import record_error
from simplechat.observability.metrics import count_join, socket_connected, socket_disconnected
from simplechat.realtime.emit import emit_to
from simplechat.realtime.event_limits import spend
from simplechat.realtime.presence import presence, status_after
from simplechat.realtime.rooms import NAMESPACE, room, user_room
from simplechat.realtime.sockets import (
    SocketUser,
    admit_socket,
    register_socket,
    release_socket,
    socket_user,
    unregister_socket,
)

log = logging.getLogger(__name__)


def chat_event(name: str, budget: str | None = "events", one_at_a_time: bool = False
               ) -> Callable:
    """Register a handler that gets the socket's user and a dict payload, and always answers.

    The user comes from the socket's session, checked against the shared session cache (no SQL
    per event); a session ended since connecting gets ``unauthorized``. An event past the
    user's ``budget`` (realtime/event_limits.py; None: the handler has a per-user limit of its
    own), or, ``one_at_a_time``, sent while the socket's previous one still runs, gets
    ``rate_limited`` and does nothing. Any other payload shape gets ``invalid``; an unexpected
    exception is recorded in GenericErrorLog and answered with ``unavailable``.
    """

    def decorator(handler: Callable[[SocketUser, dict], dict]) -> Callable:
        @functools.wraps(handler)
        def wrapper(data=None, *_ignored):
            try:
                user = socket_user(request.sid)
            except Exception:
                # Neither the session cache nor the database answered: the client retries later.
                log.warning("socket:%s: could not check the session", name, exc_info=True)
                return error("unavailable")
            if user is None:
                return error("unauthorized")
            if one_at_a_time:
                if name in user.running:
                    return error("rate_limited", retry_after=1.0)
                user.running.add(name)
            try:
                return run(user, data)
            finally:
                if one_at_a_time:
                    user.running.discard(name)

        def run(user: SocketUser, data) -> dict:
            if budget is not None and (wait := spend(user.id, budget)):
                return error("rate_limited", retry_after=wait)
            if not isinstance(data, dict):
                return error("invalid")
            g._login_user = user  # current_user, for anything the handler calls
            g.log_user_id = user.id
            conversation_id = data.get("conversation_id")
            g.log_conversation_id = conversation_id if isinstance(conversation_id, int) else None
            try:
                return handler(user, data)
            except Exception as exc:
                record_error(f"socket:{name}", exc, user.id)
                return error("unavailable")

        socketio.on_event(name, wrapper, namespace=NAMESPACE)
        return wrapper

    return decorator


@socketio.on("connect", namespace=NAMESPACE)
def on_connect(auth=None):
    # The session check: from the session cache when warm, else one SQL read (socket_login);
    # a program sends an API token instead (auth: {"token": ...}), checked the same way.
    user = (socket_token_login(auth["token"]) if isinstance(auth, dict) and "token" in auth
            else socket_login())
    if user is None:
        return False  # refused: the client gets a connect_error
    g._login_user = user  # current_user, for anything connect calls
    end_transaction()  # a database connection goes back to the pool before the Redis work
    if not admit_socket(request.sid, user):
        # The client gets a connect_error whose message is the code (and does not retry).
        raise ConnectRefused("too_many_sockets",
                             {"max_sockets": current_app.config["CHAT_MAX_SOCKETS_PER_USER"]})
    try:
        join_room(user_room(user.id))
        join_room(user.room)
        register_socket(request.sid, user)
    except Exception:
        release_socket(request.sid)
        raise
    # Later events need nothing from the cookie (the user is in the registry, the session copy
    # in Flask-SocketIO's environ): without it, Flask does not decode and verify the signed
    # session cookie again for every event.
    request.environ.pop("HTTP_COOKIE", None)
    socket_connected()
    _presence_changed(user.id, request.sid, online=True)
    return True


@socketio.on("disconnect", namespace=NAMESPACE)
def on_disconnect(reason=None):
    socket_disconnected()
    user = unregister_socket(request.sid)
    if user is not None:
        _presence_changed(user.id, request.sid, online=False)


@socketio.on("*", namespace=NAMESPACE)
def on_unknown_event(event, *_args):
    """An event this server does not know: answered, when the client asked for an answer
    (from the user's budget of events, like the cheap ones it knows)."""
    try:
        user = socket_user(request.sid)
    except Exception:
        user = None  # the session cache did not answer: the answer is the same anyway
    if user is not None and (wait := spend(user.id, "events")):
        return error("rate_limited", retry_after=wait)
    return error("unknown_event")


def _presence_changed(user_id: int, sid: str, online: bool) -> None:
    """Record a socket coming or going; tell the user's conversations when that changes
    whether the user is online. Presence is a nicety: a Redis outage must not refuse sockets."""
    try:
        tracker = presence()
        # The rooms first: between the change and its announcement nothing waits on Redis, so
        # a socket going and another coming at once (a page reloaded) are announced in the
        # order Redis recorded them. With a read in between, the offline announcement could
        # overtake the online one that followed it, leaving the peer shown offline.
        rooms = _presence_rooms(user_id)
        if online:
            changed = tracker.touch(user_id, sid)
            status = status_after(True)
        else:
            last_seen = tracker.drop(user_id, sid)
            changed, status = last_seen is not None, status_after(False, last_seen)
        if changed:
            emit_to(rooms, "presence", {"user_id": user_id, **status})
    except Exception:
        log.warning("presence of user %s not updated", user_id, exc_info=True)


def _presence_rooms(user_id: int) -> list[str]:
    """Who hears of a user's presence: the rooms of the user's conversations (the chat pages'
    headers), and the personal rooms of the user's direct peers (their conversation lists show
    a dot for them, with no room joined). Both from the membership cache, in one read."""
    peers = membership().direct_peers(user_id)
    return ([room(cid) for cid in peers]
            + [user_room(uid) for uid in sorted({p for p in peers.values() if p is not None})])


def _stranger_refusal(user_id: int, conversation_id: object) -> str | None:
    """``invalid`` for a value that cannot be a conversation id, ``forbidden`` for one that is
    not in the user's own list of conversations (the membership cache's one entry per user,
    read at connect), else None. Asked before anything about the conversation itself: that
    read (``membership_refusal``, ``read_markers``) fills a cache entry for the id from SQL on
    a miss, so an id the user is not in would cost an SQL read and a Redis key each."""
    if not valid_conversation_id(conversation_id):
        return "invalid"
    return None if conversation_id in membership().direct_peers(user_id) else "forbidden"


# A join's answer holds up to CHAT_RECENT_MESSAGES messages: a socket runs one at a time (the
# page waits for each answer), so a user's sockets cannot pile up hundreds of them at once.
@chat_event("join", budget="join", one_at_a_time=True)
@count_join
def on_join(user: SocketUser, data: dict) -> dict:
    conversation_id = data.get("conversation_id")
    refusal = _stranger_refusal(user.id, conversation_id)
    if refusal:
        return error(refusal)
    markers = read_markers(conversation_id)  # the members, from the membership cache
    if user.id not in markers:
        return error("forbidden")
    after = data.get("after")
    if after is not None:
        after = parse_message_id(after)
        if after is None:
            return error("invalid")
    join_room(room(conversation_id))
    if after is None:
        messages, has_more, _source = recent_messages(conversation_id)
    else:
        messages, has_more, _source = messages_after(conversation_id, after)
    return {"ok": True, "messages": messages, "has_more": has_more,
            "read": {str(uid): mid for uid, mid in markers.items()},
            "presence": _presence_of(list(markers))}


def _presence_of(user_ids: list[int]) -> dict[str, dict]:
    try:
        return {str(uid): status for uid, status in presence().status(user_ids).items()}
    except Exception:
        log.warning("presence unavailable", exc_info=True)
        return {}


@chat_event("leave")
def on_leave(user: SocketUser, data: dict) -> dict:
    conversation_id = data.get("conversation_id")
    if not valid_conversation_id(conversation_id):
        return error("invalid")
    leave_room(room(conversation_id))  # leaving a room one is not in changes nothing
    return {"ok": True}


@chat_event("send_message", budget=None)  # CHAT_RATE_LIMIT, per user
def on_send_message(user: SocketUser, data: dict) -> dict:
    return send_message(
        user,
        data.get("conversation_id"),
        data.get("message"),
        data.get("client_id"),
        data.get("reply_to"),
        data.get("attachments"),
    )


@chat_event("heartbeat")
def on_heartbeat(user: SocketUser, data: dict) -> dict:
    """Keeps this socket counted as online (clients send it every 25 seconds)."""
    presence().touch(user.id, request.sid)
    return {"ok": True}


@chat_event("presence")
def on_presence(user: SocketUser, data: dict) -> dict:
    """Online state and last-seen time of a conversation's participants."""
    conversation_id = data.get("conversation_id")
    refusal = (_stranger_refusal(user.id, conversation_id)
               or membership_refusal(user.id, conversation_id))
    if refusal:
        return error(refusal)
    return {"ok": True, "presence": _presence_of(participant_ids(conversation_id))}


@chat_event("typing", budget="typing")
def on_typing(user: SocketUser, data: dict) -> dict:
    """Relay "is typing" to the others in the room; never stored."""
    typing = data.get("typing", True)
    conversation_id = data.get("conversation_id")
    refusal = (_stranger_refusal(user.id, conversation_id)
               or membership_refusal(user.id, conversation_id))
    if refusal or not isinstance(typing, bool):
        return error(refusal or "invalid")
    emit_to(room(conversation_id), "typing",
            {"conversation_id": conversation_id, "user_id": user.id, "name": user.full_name,
             "typing": typing}, skip_sid=request.sid)
    return {"ok": True}


@chat_event("read")
def on_read(user: SocketUser, data: dict) -> dict:
    return mark_read(user, data)


@chat_event("edit_message", budget=None)  # CHAT_CHANGE_RATE_LIMIT, per user
def on_edit_message(user: SocketUser, data: dict) -> dict:
    return edit_message(user, data)


@chat_event("delete_message", budget=None)  # CHAT_CHANGE_RATE_LIMIT, per user
def on_delete_message(user: SocketUser, data: dict) -> dict:
    return delete_message(user, data)


@chat_event("react", budget=None)  # CHAT_REACT_RATE_LIMIT, per user
def on_react(user: SocketUser, data: dict) -> dict:
    return react(user, data)


@chat_event("rename_conversation")
def on_rename_conversation(user: SocketUser, data: dict) -> dict:
    return rename_conversation(user, data)


@chat_event("add_participants")
def on_add_participants(user: SocketUser, data: dict) -> dict:
    return add_participants(user, data)


@chat_event("leave_conversation")
def on_leave_conversation(user: SocketUser, data: dict) -> dict:
    return leave_conversation(user, data)
