"""The send path: validate, limit, assign id and time, cache, queue the SQL write, fan out.

One plain function, called by the Socket.IO handler, the CLI and the tests alike.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from flask import current_app

from ..extensions import db
from ..metrics import observe_send
from ..services import services
from .conversations import participant_ids, room, user_room, valid_conversation_id
from .fanout import emit_to
from .ids import new_message_id
from .messages import message_payload

log = logging.getLogger(__name__)

# C0 control characters other than tab and newline, and DEL: never stored.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_CLIENT_ID = 64


class Unavailable(Exception):
    """Redis or the broker could not take the message: nothing was promised."""


def error(code: str, **extra) -> dict:
    return {"ok": False, "error": code, **extra}


def clean_text(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def checked_text(text: object) -> tuple[str, dict | None]:
    """The text as it will be stored, or an error ack: the rules for sending and editing."""
    if not isinstance(text, str):
        return "", error("invalid")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored
        return "", error("invalid")
    # The limit applies to what is stored: surrounding blanks and control characters go first.
    text = clean_text(text)
    if not text:
        return "", error("empty")
    limit = current_app.config["CHAT_MAX_MESSAGE_LENGTH"]
    if len(text) > limit:
        return "", error("too_long", max_length=limit)
    return text, None


class Sender(Protocol):
    """Who sends: a User, or the user of a socket (chat.sockets.SocketUser)."""

    id: int
    full_name: str


def _retry_answer(original: dict, text: str) -> dict:
    """The answer to a send whose client id was seen before in this conversation: the original
    message if it is the same text (a retry), else ``conflict``."""
    if original.get("message") != text:
        return error("conflict")
    return {"ok": True, "message": original, "duplicate": True}


@observe_send
def send_message(sender: Sender, conversation_id: object, text: object,
                 client_id: object = None) -> dict:
    """Send ``text`` from ``sender`` to a conversation; returns the acknowledgement."""
    # 1-2. Validate the payload, then membership.
    if not valid_conversation_id(conversation_id) or not isinstance(text, str):
        return error("invalid")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID
    ):
        return error("invalid")
    text, refusal = checked_text(text)
    if refusal:
        return refusal
    members = participant_ids(conversation_id)
    sender_id, sender_name = sender.id, sender.full_name
    if sender_id not in members:
        return error("forbidden")
    end_transaction()

    svc = services()
    # A client id is the sender's own, in one conversation.
    dedupe_key = f"{sender_id}:{conversation_id}:{client_id}" if client_id else None
    try:
        # A retry of a send that already went through gets the original back.
        if dedupe_key and (original := svc.cache.lookup(dedupe_key)) is not None:
            return _retry_answer(original, text)
        # 3. Rate limit, shared by every process.
        wait = svc.limiter.hit(str(sender_id))
        if wait:
            return error("rate_limited", retry_after=round(wait, 3))
        # 4. Id and time, recent list, queued SQL write.
        payload = message_payload(new_message_id(), conversation_id, None, text, client_id,
                                  sender_id=sender_id, sender_name=sender_name)
        original = svc.cache.push(conversation_id, payload, dedupe_key)
        if original is not None:
            return _retry_answer(original, text)
        _queue_write(payload, dedupe_key)
    except Unavailable:
        return error("unavailable")
    except Exception:
        log.warning("send to conversation %s refused: storage unavailable", conversation_id,
                    exc_info=True)
        return error("unavailable")
    # 4. Fan out to every process's sockets in the room. The message is already safe: a
    # failed emit is caught up by clients through `join` with `after`.
    try:
        emit_to(room(conversation_id), "message", payload)
        # Everyone's conversation list (unread counts, previews), wherever their sockets are.
        emit_to([user_room(uid) for uid in members], "conversation_activity",
                activity_notice(payload))
    except Exception:
        log.exception("fan-out of message %s failed", payload["id"])
    # 5. The acknowledgement: the write is queued and will reach SQL.
    return {"ok": True, "message": payload}


def end_transaction() -> None:
    """Give the database connection back to the pool before the Redis and broker round trips.

    One eventlet worker runs many events at once; a send otherwise kept one of the pool's few
    connections until its event ended. A benchmark with 1,000 clients ran the pool dry (events
    waited 30 s for a connection, then failed; docs/PERFORMANCE.md). The caller's objects keep
    what they had loaded."""
    session = db.session()
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


PREVIEW_LENGTH = 120


def activity_notice(payload: dict) -> dict:
    """The small event each participant's personal room gets for a new message."""
    return {
        "conversation_id": payload["conversation_id"],
        "id": payload["id"],
        "sender": payload["sender"],
        "sender_name": payload["sender_name"],
        "preview": payload["message"][:PREVIEW_LENGTH],
        "timestamp": payload["timestamp"],
    }


def _queue_write(payload: dict, dedupe_key: str | None) -> None:
    """Put the message in the write buffer and make sure a flush is queued; raises Unavailable
    (with the message taken back from the cache) when neither Redis nor the broker can take it."""
    from ..tasks import flush_writes
    from .write_buffer import write_buffer

    buffer = write_buffer()
    try:
        # Eager Celery (the embedded default, tests) stores it before the ack, as before.
        eager = current_app.extensions["celery"].conf.task_always_eager
        if buffer.append(payload) or eager:
            flush_writes.apply_async()
    except Exception as exc:
        log.warning("could not queue message %s", payload["id"], exc_info=True)
        try:
            if not buffer.take_back(payload):
                return  # a flush already holds it: it will be stored
        except Exception:
            log.warning("could not take message %s back from the write buffer", payload["id"])
        try:
            services().cache.remove(payload["conversation_id"], payload["id"], dedupe_key)
        except Exception:
            log.warning("could not take message %s back from the cache", payload["id"])
        raise Unavailable from exc
