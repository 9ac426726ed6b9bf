"""What a command's answer does, whether it comes back at once or later through its
``response_url``: Slack's ``response_type`` ``in_channel`` posts it as the command's bot
through the send path; ``ephemeral`` (the default) shows it to the caller's sockets alone, as
the ``ephemeral`` event. A ``response_url`` is signed (SECRET_KEY), bound to one command,
conversation and caller, and taken for SLASH_COMMAND_RESPONSE_TTL seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.infra.membership import is_participant, valid_conversation_id
from simplechat.infra.offload import Busy, offload
from simplechat.infra.services import services
from simplechat.messaging.formatting import render_html
from simplechat.messaging.payload import message_payload
from simplechat.messaging.send import send_message
from simplechat.models import SlashCommand, User
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room
from simplechat.slash_commands.registry import applies_to, join_bot
from simplechat.webhooks.hooks import site_url
from simplechat.webhooks.slack import SlackPayloadError, to_markdown

log = logging.getLogger(__name__)

IN_CHANNEL, EPHEMERAL = "in_channel", "ephemeral"
RESPONSE_PATH = "/api/commands/responses/"
_SALT = "simplechat.slash-command-response"
clock = time.time  # the time tokens are made and checked at (tests move it)


@dataclass(frozen=True)
class Call:
    """One use of a command: which, where, by whom."""

    command_id: int
    conversation_id: int
    user_id: int


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def response_url(call: Call, base: str) -> str:
    """The address that takes this call's later answers until the validity ends."""
    expires = int(clock()) + current_app.config["SLASH_COMMAND_RESPONSE_TTL"]
    token = _serializer().dumps([call.command_id, call.conversation_id, call.user_id, expires])
    return f"{site_url(base)}{RESPONSE_PATH}{token}"


def call_of(token: str) -> Call | None:
    """The call a response_url's token stands for, while it is valid and its command is still
    the one its name calls in that conversation, and its caller still takes part."""
    try:
        found = _serializer().loads(token)
    except BadSignature:
        return None
    if not (isinstance(found, list) and len(found) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in found)):
        return None
    command_id, conversation_id, user_id, expires = found
    if clock() >= expires or not valid_conversation_id(conversation_id):
        return None
    command = db.session.get(SlashCommand, command_id)
    if (command is None or not applies_to(command, conversation_id)
            or not is_participant(user_id, conversation_id)):
        return None
    return Call(command_id, conversation_id, user_id)


def answer(call: Call, reply: dict) -> dict:
    """Show a service's answer (Slack's message payload with ``response_type``); the ack of
    what was done, or the error: ``invalid`` (not Slack's shape), ``empty`` (shows nothing),
    ``not_found`` (the command is gone), or the send path's refusal of an in_channel post.
    An in_channel answer the send path refuses is told to the caller as well."""
    try:
        text = to_markdown(reply)
    except SlackPayloadError:
        return {"ok": False, "error": "invalid"}
    if not text:
        return {"ok": False, "error": "empty"}
    command = db.session.get(SlashCommand, call.command_id)
    bot = db.session.get(User, command.bot_user_id) if command is not None else None
    if bot is None:
        return {"ok": False, "error": "not_found"}
    name, bot_id, bot_name = command.name, bot.id, bot.full_name
    if reply.get("response_type") == IN_CHANNEL:
        join_bot(call.conversation_id, bot_id)
        ack = send_message(bot, call.conversation_id, text)
        if not ack["ok"]:
            tell(call, name, f"{name}'s answer could not be posted here ({ack['error']}).",
                 bot_id, bot_name)
        return ack
    limited = services().limiter.hit(str(bot_id))  # the bot's CHAT_RATE_LIMIT, as a post's
    if limited:
        return {"ok": False, "error": "rate_limited", "retry_after": round(limited, 3)}
    return show_caller(call, name, text, bot_id, bot_name)


def show_caller(call: Call, name: str, text: str, sender_id: int | None,
                sender_name: str) -> dict:
    """``ephemeral {"conversation_id", "message"}`` to the caller's sockets alone: a message
    payload (not stored, never seen by anyone else) with ``ephemeral`` true and ``command``."""
    try:
        html = offload(render_html, text)
    except Busy:
        return {"ok": False, "error": "unavailable"}
    message = message_payload(new_message_id(), call.conversation_id, None, text,
                              sender_id=sender_id, sender_name=sender_name, html=html)
    message.update(ephemeral=True, command=name)
    emit_to(user_room(call.user_id), EPHEMERAL,
            {"conversation_id": call.conversation_id, "message": message})
    return {"ok": True, "message": message}


def tell(call: Call, name: str, text: str, sender_id: int | None = None,
         sender_name: str = "Simple Chat") -> None:
    """Tell the caller alone what became of their command (its service failed, was slow,
    or its answer could not be posted); never the room."""
    try:
        show_caller(call, name, text, sender_id, sender_name)
    except Exception:
        log.exception("could not tell user %s about %s", call.user_id, name)
