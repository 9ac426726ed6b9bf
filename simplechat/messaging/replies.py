"""Replies: the message a reply answers (or a thread's root), found where it is now (the recent
list, SQL, or the write buffer while it is on its way to SQL). The quoted summaries of stored
replies are rebuilt in ``stored``."""

from __future__ import annotations

import logging

from simplechat.extensions import db
from simplechat.infra.cache import ListId
from simplechat.infra.services import services
from simplechat.infra.write_buffer import write_buffer
from simplechat.messaging.payload import reply_summary
from simplechat.messaging.stored import payloads_of_rows
from simplechat.models import Message

log = logging.getLogger(__name__)


def find_message(conversation_id: int, message_id: str) -> dict | None:
    """The current payload of a message of this conversation, wherever it is; None if there is
    no such message there. The recent list answers most (one round trip); SQL the older ones;
    the write buffer one that left the list before its batch reached SQL. A thread reply found
    in SQL or the buffer is looked for in its thread's list, which holds its current version
    (its reactions, an edit whose task has not run yet)."""
    cached = _cached(conversation_id, message_id)
    if cached is not None:
        return cached
    found = None
    row = db.session.get(Message, message_id)
    if row is not None:
        if row.conversation_id != conversation_id:
            return None
        found = payloads_of_rows(conversation_id, [row])[0]
    else:
        waiting = write_buffer().find(message_id)
        if waiting is not None and waiting.get("conversation_id") == conversation_id:
            found = waiting
    if found is not None and found.get("thread_id"):
        return _cached((conversation_id, found["thread_id"]), message_id) or found
    return found


def _cached(list_id: ListId, message_id: str) -> dict | None:
    try:
        return services().cache.find(list_id, message_id)
    except Exception:
        log.warning("recent-message cache unavailable; looking in SQL", exc_info=True)
        return None


__all__ = ["find_message", "reply_summary"]
