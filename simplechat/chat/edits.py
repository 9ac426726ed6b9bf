"""Editing and deleting one's own messages: the same rules as sending, within a time window."""

from __future__ import annotations

import logging

from flask import current_app

from ..extensions import db
from ..models import Message, User
from ..services import services
from .conversations import is_participant, room, valid_conversation_id
from .fanout import emit_to
from .history import cached_messages, sender_names
from .ids import message_id_time, parse_message_id
from .messages import TIMESTAMP_FORMAT, payload_from_row, tombstone
from .send import checked_text, error

log = logging.getLogger(__name__)


def _current_version(conversation_id: int, message_id: str) -> dict | None:
    """The message as clients see it now: the cached payload, else the stored row."""
    for message in cached_messages(conversation_id):
        if message["id"] == message_id:
            return message
    row = db.session.get(Message, message_id)
    if row is None or row.conversation_id != conversation_id:
        return None
    return payload_from_row(row, sender_names(conversation_id, [row]))


def _changeable(user: User, data: dict) -> tuple[dict | None, dict | None]:
    """The message ``data`` names if ``user`` may change it now, else an error ack."""
    conversation_id = data.get("conversation_id")
    message_id = parse_message_id(data.get("message_id"))
    if not valid_conversation_id(conversation_id) or message_id is None:
        return None, error("invalid")
    if not is_participant(user.id, conversation_id):
        return None, error("forbidden")
    current = _current_version(conversation_id, message_id)
    if current is None or current.get("deleted"):
        return None, error("not_found")
    if current["sender"] != user.id:
        return None, error("forbidden")
    age = (_now() - message_id_time(message_id)).total_seconds()
    if age > current_app.config["CHAT_EDIT_WINDOW"]:
        return None, error("edit_window_closed")
    return current, None


def edit_message(user: User, data: dict) -> dict:
    """Replace the text of one's own message; every client, the cache and SQL see the change."""
    current, refusal = _changeable(user, data)
    if refusal:
        return refusal
    text, refusal = checked_text(data.get("message"))
    if refusal:
        return refusal
    changed_at = _now()
    payload = {**current, "message": text, "edited_at": changed_at.strftime(TIMESTAMP_FORMAT)}
    return _apply(user, payload, changed_at)


def delete_message(user: User, data: dict) -> dict:
    """Turn one's own message into a tombstone everywhere."""
    current, refusal = _changeable(user, data)
    if refusal:
        return refusal
    return _apply(user, tombstone(current), _now())


def _apply(user: User, payload: dict, changed_at) -> dict:
    from ..tasks import store_message_change

    svc = services()
    try:
        # Changes have a bucket of their own: a send does not use up the delete that follows
        # it, and an edit does not refuse the delete a moment later; a script still cannot
        # change messages faster than it can send them.
        wait = svc.change_limiter.hit(f"change:{user.id}")
        if wait:
            return error("rate_limited", retry_after=round(wait, 3))
        store_message_change.apply_async(args=[payload, changed_at.isoformat()])
        svc.cache.replace(payload["conversation_id"], payload)
    except Exception:
        log.warning("change of message %s refused: storage unavailable", payload["id"],
                    exc_info=True)
        return error("unavailable")
    try:
        emit_to(room(payload["conversation_id"]), "message_updated", payload)
    except Exception:
        log.exception("fan-out of the change to message %s failed", payload["id"])
    return {"ok": True, "message": payload}


def _now():
    from ..models import utcnow

    return utcnow()
