"""Replies: the message a reply answers, found where it is now (the recent list, SQL, or the
write buffer while it is on its way to SQL), and the quoted summaries history rebuilds from SQL."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ..extensions import db
from ..models import Message, User
from ..services import services
from .messages import PREVIEW_LENGTH, reply_summary

log = logging.getLogger(__name__)


def find_message(conversation_id: int, message_id: str) -> dict | None:
    """The current payload of a message of this conversation, wherever it is; None if there is
    no such message there. The recent list answers most (one round trip); SQL the older ones;
    the write buffer one that left the list before its batch reached SQL."""
    from .history import payloads_of_rows
    from .write_buffer import write_buffer

    try:
        cached = services().cache.find(conversation_id, message_id)
    except Exception:
        log.warning("recent-message cache unavailable; looking in SQL", exc_info=True)
        cached = None
    if cached is not None:
        return cached
    row = db.session.get(Message, message_id)
    if row is not None:
        return payloads_of_rows(conversation_id, [row])[0] if (
            row.conversation_id == conversation_id) else None
    waiting = write_buffer().find(message_id)
    if waiting is not None and waiting.get("conversation_id") == conversation_id:
        return waiting
    return None


def summaries_for(rows: list[Message]) -> dict[str, dict]:
    """The reply summary of each original the ``rows`` answer, by original id, from SQL (one
    query for the originals, one for names of their senders)."""
    wanted = {r.reply_to_id for r in rows if r.reply_to_id}
    if not wanted:
        return {}
    found = db.session.execute(
        select(Message.id, Message.sender_id, Message.text, Message.deleted_at,
               User.first_name, User.last_name, User.username)
        .join(User, User.id == Message.sender_id)
        .where(Message.id.in_(wanted))
    ).all()
    summaries = {}
    for mid, sender_id, text, deleted_at, first, last, username in found:
        summaries[mid] = {
            "id": mid, "sender": sender_id,
            "sender_name": f"{first} {last}".strip() or username,
            "preview": "" if deleted_at is not None else text[:PREVIEW_LENGTH],
        }
    return summaries


__all__ = ["find_message", "reply_summary", "summaries_for"]
