"""Reading history: from the recent-message cache while it covers the range, else from SQL."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select, tuple_

from simplechat.extensions import db
from simplechat.infra.cache import ALL, PARTIAL
from simplechat.infra.ids import message_id_time
from simplechat.infra.services import services
from simplechat.messaging.stored import payloads_of_rows
from simplechat.models import Message
from simplechat.observability.metrics import count_history_source

log = logging.getLogger(__name__)


def _sql_before(conversation_id: int, before: str | None, limit: int) -> list[Message]:
    """Up to ``limit`` stored messages older than ``before`` (all if None), newest first."""
    query = select(Message).where(Message.conversation_id == conversation_id)
    if before is not None:
        when = message_id_time(before)
        # A row comparison, so PostgreSQL seeks the (conversation, created_at, id) index to the
        # page instead of filtering every newer row (OR-ed conditions are only a filter).
        query = query.where(tuple_(Message.created_at, Message.id) < tuple_(when, before))
    return list(db.session.scalars(
        query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
    ))


def _sql_after(conversation_id: int, after: str, limit: int) -> list[Message]:
    """Up to ``limit`` stored messages newer than ``after``, oldest first."""
    when = message_id_time(after)
    return list(db.session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .where(tuple_(Message.created_at, Message.id) > tuple_(when, after))
        .order_by(Message.created_at, Message.id).limit(limit)
    ))


def _cached(conversation_id: int) -> tuple[list[dict], str | None]:
    try:
        return services().cache.recent(conversation_id)
    except Exception:
        log.warning("recent-message cache unavailable; reading SQL", exc_info=True)
        return [], None


def cached_messages(conversation_id: int) -> list[dict]:
    """What the recent-message cache holds for a conversation (empty if it is unreachable)."""
    return _cached(conversation_id)[0]


@count_history_source
def recent_messages(conversation_id: int) -> tuple[list[dict], bool, str]:
    """The last N messages, oldest first, whether older ones exist, and the source used."""
    size = current_app.config["CHAT_RECENT_MESSAGES"]
    cached, state = _cached(conversation_id)
    if state == ALL or (state == PARTIAL and len(cached) >= size):
        return cached[-size:], state == PARTIAL, "cache"
    # Flushed, expired or never warmed: SQL holds the truth (plus what the list has that is
    # still on its way to SQL). Re-warm the list with the merge.
    rows = _sql_before(conversation_id, None, size + 1)
    complete = len(rows) <= size
    stored = payloads_of_rows(conversation_id, list(reversed(rows[:size])))
    try:
        merged = services().cache.rewarm(conversation_id, stored, complete)
    except Exception:
        log.warning("could not re-warm conversation %s", conversation_id, exc_info=True)
        merged = sorted({m["id"]: m for m in stored + cached}.values(), key=lambda m: m["id"])
    has_more = not complete or len(merged) > size
    return merged[-size:], has_more, "sql"


def rewarm_recent(conversation_id: int) -> int:
    """Re-warm a conversation's recent list from SQL, keeping what it holds that SQL has not
    yet got; returns how many messages the list then holds."""
    size = current_app.config["CHAT_RECENT_MESSAGES"]
    rows = _sql_before(conversation_id, None, size + 1)
    stored = payloads_of_rows(conversation_id, list(reversed(rows[:size])))
    return len(services().cache.rewarm(conversation_id, stored, len(rows) <= size))


@count_history_source
def messages_before(
    conversation_id: int, before: str | None, limit: int
) -> tuple[list[dict], bool, str]:
    """A page of up to ``limit`` messages older than ``before``, oldest first, and has_more."""
    cached, state = _cached(conversation_id)
    older = [m for m in cached if before is None or m["id"] < before]
    if state == ALL:
        return older[-limit:], len(older) > limit, "cache"
    if state == PARTIAL and len(older) >= limit:  # older ones exist in SQL beyond the list
        return older[-limit:], True, "cache"
    rows = _sql_before(conversation_id, before, limit + 1)
    page = payloads_of_rows(conversation_id, list(reversed(rows[:limit])))
    return page, len(rows) > limit, "sql"


@count_history_source
def messages_after(conversation_id: int, after: str) -> tuple[list[dict], bool, str]:
    """Up to N messages newer than ``after``, oldest first (reconnect catch-up), and has_more."""
    size = current_app.config["CHAT_RECENT_MESSAGES"]
    cached, state = _cached(conversation_id)
    if state == ALL or (state == PARTIAL and cached and cached[0]["id"] <= after):
        newer = [m for m in cached if m["id"] > after]
        return newer[:size], len(newer) > size, "cache"
    rows = _sql_after(conversation_id, after, size + 1)
    stored = payloads_of_rows(conversation_id, rows)
    merged = sorted({m["id"]: m for m in stored + [m for m in cached if m["id"] > after]}.values(),
                    key=lambda m: m["id"])
    return merged[:size], len(merged) > size, "sql"
