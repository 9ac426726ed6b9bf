"""Socket.IO handlers of the ``/chat`` namespace: parse, call, answer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from flask import g, request
from flask_login import current_user
from flask_socketio import join_room, leave_room

from ..activity import record_error
from ..extensions import socketio
from ..metrics import count_join, socket_connected, socket_disconnected
from .conversations import (
    NAMESPACE,
    conversation_ids_of,
    participant_conversation,
    participant_ids,
    room,
    user_room,
    valid_conversation_id,
)
from .edits import delete_message, edit_message
from .groups import add_participants, leave_conversation, rename_conversation
from .history import messages_after, recent_messages
from .ids import parse_message_id
from .presence import presence
from .read_state import mark_read, read_markers
from .send import error, send_message

log = logging.getLogger(__name__)


def chat_event(name: str) -> Callable:
    """Register a handler that gets a dict payload and the logged-in user, and always answers.

    Any other payload shape gets ``invalid``; an unexpected exception is recorded in
    GenericErrorLog and answered with ``unavailable``; a user logged out or deactivated since
    connecting gets ``unauthorized``.
    """

    def decorator(handler: Callable[[dict], dict]) -> Callable:
        @functools.wraps(handler)
        def wrapper(data=None, *_ignored):
            try:
                authenticated = current_user.is_authenticated  # loads the user from SQL
            except Exception:
                # The database is down: still answer, so the client can retry later.
                log.warning("socket:%s: could not load the user", name, exc_info=True)
                return error("unavailable")
            if not authenticated:
                return error("unauthorized")
            if not isinstance(data, dict):
                return error("invalid")
            g.log_user_id = current_user.id
            conversation_id = data.get("conversation_id")
            g.log_conversation_id = conversation_id if isinstance(conversation_id, int) else None
            try:
                return handler(data)
            except Exception as exc:
                record_error(f"socket:{name}", exc, current_user.id)
                return error("unavailable")

        socketio.on_event(name, wrapper, namespace=NAMESPACE)
        return wrapper

    return decorator


@socketio.on("connect", namespace=NAMESPACE)
def on_connect(auth=None):
    if not current_user.is_authenticated:
        return False  # refused: the client gets a connect_error
    join_room(user_room(current_user.id))
    socket_connected()
    _presence_changed(current_user.id, request.sid, online=True)
    return True


@socketio.on("disconnect", namespace=NAMESPACE)
def on_disconnect(reason=None):
    socket_disconnected()
    if current_user.is_authenticated:
        _presence_changed(current_user.id, request.sid, online=False)


def _presence_changed(user_id: int, sid: str, online: bool) -> None:
    """Record a socket coming or going; tell the user's conversations when that changes
    whether the user is online. Presence is a nicety: a Redis outage must not refuse sockets."""
    try:
        tracker = presence()
        changed = tracker.touch(user_id, sid) if online else tracker.drop(user_id, sid)
        if changed:
            status = tracker.status([user_id])[user_id]
            socketio.emit("presence", {"user_id": user_id, **status},
                          to=[room(cid) for cid in conversation_ids_of(user_id)],
                          namespace=NAMESPACE)
    except Exception:
        log.warning("presence of user %s not updated", user_id, exc_info=True)


@chat_event("join")
@count_join
def on_join(data: dict) -> dict:
    conversation = participant_conversation(current_user.id, data.get("conversation_id"))
    if conversation is None:
        return error("forbidden")
    after = data.get("after")
    if after is not None:
        after = parse_message_id(after)
        if after is None:
            return error("invalid")
    join_room(room(conversation.id))
    if after is None:
        messages, has_more, _source = recent_messages(conversation.id)
    else:
        messages, has_more, _source = messages_after(conversation.id, after)
    markers = read_markers(conversation.id)
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
def on_leave(data: dict) -> dict:
    conversation_id = data.get("conversation_id")
    if not valid_conversation_id(conversation_id):
        return error("invalid")
    leave_room(room(conversation_id))  # leaving a room one is not in changes nothing
    return {"ok": True}


@chat_event("send_message")
def on_send_message(data: dict) -> dict:
    return send_message(
        current_user._get_current_object(),
        data.get("conversation_id"),
        data.get("message"),
        data.get("client_id"),
    )


@chat_event("heartbeat")
def on_heartbeat(data: dict) -> dict:
    """Keeps this socket counted as online (clients send it every 25 seconds)."""
    presence().touch(current_user.id, request.sid)
    return {"ok": True}


@chat_event("presence")
def on_presence(data: dict) -> dict:
    """Online state and last-seen time of a conversation's participants."""
    conversation = participant_conversation(current_user.id, data.get("conversation_id"))
    if conversation is None:
        return error("forbidden")
    return {"ok": True, "presence": _presence_of(participant_ids(conversation.id))}


@chat_event("typing")
def on_typing(data: dict) -> dict:
    """Relay "is typing" to the others in the room; never stored."""
    typing = data.get("typing", True)
    if not isinstance(typing, bool):
        return error("invalid")
    conversation = participant_conversation(current_user.id, data.get("conversation_id"))
    if conversation is None:
        return error("forbidden")
    socketio.emit("typing", {"conversation_id": conversation.id, "user_id": current_user.id,
                             "name": current_user.full_name, "typing": typing},
                  to=room(conversation.id), skip_sid=request.sid, namespace=NAMESPACE)
    return {"ok": True}


@chat_event("read")
def on_read(data: dict) -> dict:
    return mark_read(current_user._get_current_object(), data)


@chat_event("edit_message")
def on_edit_message(data: dict) -> dict:
    return edit_message(current_user._get_current_object(), data)


@chat_event("delete_message")
def on_delete_message(data: dict) -> dict:
    return delete_message(current_user._get_current_object(), data)


@chat_event("rename_conversation")
def on_rename_conversation(data: dict) -> dict:
    return rename_conversation(current_user._get_current_object(), data)


@chat_event("add_participants")
def on_add_participants(data: dict) -> dict:
    return add_participants(current_user._get_current_object(), data)


@chat_event("leave_conversation")
def on_leave_conversation(data: dict) -> dict:
    return leave_conversation(current_user._get_current_object(), data)
