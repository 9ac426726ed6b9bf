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
    participant_conversation,
    room,
    user_room,
    valid_conversation_id,
)
from .history import messages_after, recent_messages
from .ids import parse_message_id
from .send import error, send_message
from .sockets import forget_socket, remember_socket

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
            if not current_user.is_authenticated:
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
    remember_socket(current_user.id, request.sid)  # so disconnect_user reaches it
    return True


@socketio.on("disconnect", namespace=NAMESPACE)
def on_disconnect(reason=None):
    socket_disconnected()
    if current_user.is_authenticated:
        forget_socket(current_user.id, request.sid)


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
    return {"ok": True, "messages": messages, "has_more": has_more}


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
