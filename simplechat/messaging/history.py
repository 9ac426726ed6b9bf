"""Reading history: from the recent-message cache while it covers the range, else from SQL.

A conversation's history is its main flow: its messages but the thread replies (those sent
``also_to_conversation`` included). Given ``thread_id``, each read is that thread's replies
instead, from the thread's own list in the cache and the same SQL index."""

from __future__ import annotations

import logging
import threading

from flask import current_app
from sqlalchemy import or_, select, tuple_

from simplechat.answers import TIMESTAMP_FORMAT
from simplechat.extensions import db, end_transaction
from simplechat.infra.cache import ALL, PARTIAL, ListId
from simplechat.infra.ids import message_id_time
from simplechat.infra.services import services
from simplechat.messaging.stored import payloads_of_rows
from simplechat.models import Message, MessageEdit
from simplechat.observability.metrics import count_history_source

log = logging.getLogger(__name__)

REWARM_LOCKS = 64  # lists that may be re-warmed from SQL at once on a process (by their hash)


def _list_id(conversation_id: int, thread_id: str | None) -> ListId:
    return conversation_id if thread_id is None else (conversation_id, thread_id)


def _flow(conversation_id: int, thread_id: str | None):
    """The rows of the main flow, or of one thread."""
    if thread_id is not None:
        return select(Message).where(Message.conversation_id == conversation_id,
                                     Message.thread_id == thread_id)
    return select(Message).where(Message.conversation_id == conversation_id,
                                 or_(Message.thread_id.is_(None),
                                     Message.also_to_conversation.is_(True)))


def _sql_before(conversation_id: int, before: str | None, limit: int,
                thread_id: str | None = None) -> list[Message]:
    """Up to ``limit`` stored messages older than ``before`` (all if None), newest first."""
    query = _flow(conversation_id, thread_id)
    if before is not None:
        when = message_id_time(before)
        # A row comparison, so PostgreSQL seeks the (conversation, created_at, id) index to the
        # page instead of filtering every newer row (OR-ed conditions are only a filter).
        query = query.where(tuple_(Message.created_at, Message.id) < tuple_(when, before))
    return list(db.session.scalars(
        query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    ))


def _sql_after(conversation_id: int, after: str, limit: int,
               thread_id: str | None = None) -> list[Message]:
    """Up to ``limit`` stored messages newer than ``after``, oldest first."""
    when = message_id_time(after)
    return list(db.session.scalars(
        _flow(conversation_id, thread_id)
        .where(tuple_(Message.created_at, Message.id) > tuple_(when, after))
        .order_by(Message.created_at, Message.id).limit(limit)
    ))


def _cached(list_id: ListId) -> tuple[list[dict], str | None]:
    try:
        return services().cache.recent(list_id)
    except Exception:
        log.warning("recent-message cache unavailable; reading SQL", exc_info=True)
        return [], None


def cached_messages(conversation_id: int) -> list[dict]:
    """What the recent-message cache holds for a conversation (empty if it is unreachable)."""
    return _cached(conversation_id)[0]


@count_history_source
def recent_messages(conversation_id: int, thread_id: str | None = None,
                    read: tuple[list[dict], str | None] | None = None
                    ) -> tuple[list[dict], bool, str]:
    """The last N messages (of the main flow, or of a thread's replies), oldest first, whether
    older ones exist, and the source used. ``read``: what the recent-message cache answered
    for the list just now (``queue_recent``, in a caller's round trip), not asked again."""
    size = current_app.config["CHAT_RECENT_MESSAGES"]
    list_id = _list_id(conversation_id, thread_id)
    cached, state = read if read is not None else _cached(list_id)
    if state == ALL or (state == PARTIAL and len(cached) >= size):
        return cached[-size:], state == PARTIAL, "cache"
    # Flushed, expired or never warmed: SQL holds the truth (plus what the list has that is
    # still on its way to SQL). Re-warm the list with the merge, once on this process: the
    # members of a conversation just started, or a room reconnecting after a restart, join it
    # all at once, and each read SQL and wrote the list again.
    lock = _rewarm_lock(list_id)
    waited = not lock.acquire(blocking=False)
    if waited:
        _wait_released(lock)
    try:
        if waited:  # re-warmed while this one waited, most likely
            cached, state = _cached(list_id)
            if state == ALL or (state == PARTIAL and len(cached) >= size):
                return cached[-size:], state == PARTIAL, "cache"
        rows = _sql_before(conversation_id, None, size + 1, thread_id)
        complete = len(rows) <= size
        stored = payloads_of_rows(conversation_id, list(reversed(rows[:size])))
        try:
            merged = services().cache.rewarm(list_id, stored, complete)
        except Exception:
            log.warning("could not re-warm conversation %s", conversation_id, exc_info=True)
            merged = sorted({m["id"]: m for m in stored + cached}.values(),
                            key=lambda m: m["id"])
    finally:
        lock.release()
    has_more = not complete or len(merged) > size
    return merged[-size:], has_more, "sql"


def _rewarm_lock(list_id: ListId) -> threading.Lock:
    """The lock that one re-warm of a recent list holds on this process."""
    locks = current_app.extensions.get("simplechat.rewarm_locks")
    if locks is None:
        locks = current_app.extensions.setdefault(
            "simplechat.rewarm_locks", [threading.Lock() for _ in range(REWARM_LOCKS)])
    return locks[hash(list_id) % len(locks)]


def _wait_released(lock: threading.Lock) -> None:
    """Take ``lock``, holding no database connection while waiting (the re-warm that holds the
    lock may need one from the pool): a read transaction with nothing to write ends first."""
    session = db.session()
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        end_transaction()
    lock.acquire()


def rewarm_recent(conversation_id: int) -> int:
    """Re-warm a conversation's recent list from SQL, keeping what it holds that SQL has not
    yet got; returns how many messages the list then holds."""
    size = current_app.config["CHAT_RECENT_MESSAGES"]
    rows = _sql_before(conversation_id, None, size + 1)
    stored = payloads_of_rows(conversation_id, list(reversed(rows[:size])))
    return len(services().cache.rewarm(conversation_id, stored, len(rows) <= size))


@count_history_source
def messages_before(
    conversation_id: int, before: str | None, limit: int, thread_id: str | None = None
) -> tuple[list[dict], bool, str]:
    """A page of up to ``limit`` messages older than ``before``, oldest first, and has_more."""
    cached, state = _cached(_list_id(conversation_id, thread_id))
    older = [m for m in cached if before is None or m["id"] < before]
    if state == ALL:
        return older[-limit:], len(older) > limit, "cache"
    if state == PARTIAL and len(older) >= limit:  # older ones exist in SQL beyond the list
        return older[-limit:], True, "cache"
    rows = _sql_before(conversation_id, before, limit + 1, thread_id)
    page = payloads_of_rows(conversation_id, list(reversed(rows[:limit])))
    return page, len(rows) > limit, "sql"


@count_history_source
def messages_after(conversation_id: int, after: str, thread_id: str | None = None,
                   read: tuple[list[dict], str | None] | None = None
                   ) -> tuple[list[dict], bool, str]:
    """Up to N messages newer than ``after``, oldest first (reconnect catch-up), and has_more.
    ``read``: as for ``recent_messages``."""
    size = current_app.config["CHAT_RECENT_MESSAGES"]
    cached, state = read if read is not None else _cached(_list_id(conversation_id, thread_id))
    if state == ALL or (state == PARTIAL and cached and cached[0]["id"] <= after):
        newer = [m for m in cached if m["id"] > after]
        return newer[:size], len(newer) > size, "cache"
    rows = _sql_after(conversation_id, after, size + 1, thread_id)
    stored = payloads_of_rows(conversation_id, rows)
    merged = sorted({m["id"]: m for m in stored + [m for m in cached if m["id"] > after]}.values(),
                    key=lambda m: m["id"])
    return merged[:size], len(merged) > size, "sql"


def edit_history(message_id: str) -> dict | None:
    """A stored message's texts, oldest first: each one an edit replaced (with when), then the
    current one; None when no message has that id. For site admins (the caller checks)."""
    message = db.session.get(Message, message_id)
    if message is None:
        return None
    earlier = db.session.scalars(select(MessageEdit).where(MessageEdit.message_id == message_id)
                                 .order_by(MessageEdit.replaced_at, MessageEdit.id)).all()
    return {"id": message.id, "conversation_id": message.conversation_id,
            "sender": message.sender_id, "current": message.text,
            "edited_at": _when(message.edited_at), "deleted_at": _when(message.deleted_at),
            "deleted_by": message.deleted_by,
            "versions": [{"text": row.text, "replaced_at": _when(row.replaced_at)}
                         for row in earlier]}


def _when(moment) -> str | None:
    return moment.strftime(TIMESTAMP_FORMAT) if moment is not None else None
