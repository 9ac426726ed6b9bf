"""Writing messages (and their reactions) to SQL, idempotent on the message id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, or_, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from simplechat.extensions import db
from simplechat.infra.ids import message_id_time
from simplechat.models import (
    Attachment,
    Conversation,
    GenericActivityLog,
    Message,
    Reaction,
    utcnow,
)


def _insert_ignoring_duplicates(rows: list[dict], table=None,
                                conflict: tuple[str, ...] | None = ("id",)):
    """An INSERT that skips rows whose key (``conflict``; None: any unique key) is taken."""
    dialect = db.session.get_bind().dialect.name
    table = Message.__table__ if table is None else table
    conflict = list(conflict) if conflict else None
    if dialect == "postgresql":
        return pg_insert(table).values(rows).on_conflict_do_nothing(index_elements=conflict)
    if dialect in ("mysql", "mariadb"):
        stmt = mysql_insert(table).values(rows)
        return stmt.on_duplicate_key_update(id=table.c.id)  # a no-op: the row stays as it is
    if dialect == "sqlite":
        return sqlite_insert(table).values(rows).on_conflict_do_nothing(index_elements=conflict)
    raise RuntimeError(f"unsupported database dialect {dialect}")


def store_messages(payloads: list[dict]) -> int:
    """Insert the messages that are not stored yet; returns how many were new."""
    return len(store_new_messages(payloads))


def store_new_messages(payloads: list[dict]) -> list[str]:
    """Insert the messages that are not stored yet, in one statement; returns the new ids.

    A message whose id is already stored is left as it is, so a retried write never duplicates
    a row. Also moves each conversation's last activity forward and logs "message_sent" for
    each new row, in the same transaction.
    """
    if not payloads:
        return []
    rows = {}
    for p in payloads:
        rows[p["id"]] = {
            "id": p["id"],
            "conversation_id": int(p["conversation_id"]),
            "sender_id": int(p["sender"]),
            "text": p["message"],
            "created_at": message_id_time(p["id"]),
            "kind": p.get("kind") or "text",
            "html": p.get("html"),
            "reply_to_id": (p.get("reply_to") or {}).get("id"),
            "mentions": p.get("mentions") or None,
            "system": p.get("system"),
        }
    existing = set(
        db.session.scalars(db.select(Message.id).where(Message.id.in_(list(rows))))
    )
    new_rows = [row for key, row in rows.items() if key not in existing]
    if new_rows:
        stmt = _insert_ignoring_duplicates(new_rows)
        if db.session.get_bind().dialect.name in ("postgresql", "sqlite"):
            # Only the rows this statement inserted: a concurrent writer's are not counted twice.
            inserted = set(db.session.scalars(stmt.returning(Message.__table__.c.id)))
            new_rows = [row for row in new_rows if row["id"] in inserted]
        else:
            db.session.execute(stmt)
    if new_rows:
        latest: dict[int, object] = {}
        for row in new_rows:
            cid = row["conversation_id"]
            latest[cid] = max(latest.get(cid, row["created_at"]), row["created_at"])
        for cid, when in latest.items():
            db.session.execute(
                update(Conversation)
                .where(Conversation.id == cid)
                .where(or_(Conversation.last_message_at.is_(None),
                           Conversation.last_message_at < when))
                .values(last_message_at=when)
            )
        # One multi-row INSERT rather than one ORM object per message.
        db.session.execute(insert(GenericActivityLog.__table__), [
            {"user_id": row["sender_id"], "action": "message_sent", "ip": None,
             "detail": {"conversation_id": row["conversation_id"], "message_id": row["id"]}}
            for row in new_rows
        ])
    db.session.commit()
    return [row["id"] for row in new_rows]


def apply_message_change(payload: dict, changed_at: datetime) -> bool:
    """Store an edit or a deletion; returns whether the row changed.

    Independent of the order in which tasks run: a change that arrives before the message's own
    write stores the message first; an older edit never overwrites a newer one; nothing
    overwrites a deletion.
    """
    store_messages([payload])
    table = Message.__table__
    stmt = update(table).where(table.c.id == payload["id"], table.c.deleted_at.is_(None))
    if payload.get("deleted"):
        stmt = stmt.values(text="", html="", mentions=None, deleted_at=changed_at)
        # Its files are no longer served (the caller removes them from the store).
        db.session.execute(update(Attachment).where(
            Attachment.message_id == payload["id"], Attachment.deleted_at.is_(None),
        ).values(deleted_at=changed_at))
    else:
        stmt = stmt.where(or_(table.c.edited_at.is_(None), table.c.edited_at < changed_at))
        stmt = stmt.values(text=payload["message"], html=payload.get("html"),
                           mentions=payload.get("mentions") or None, edited_at=changed_at)
    changed = db.session.execute(stmt).rowcount > 0
    db.session.commit()
    return changed


def apply_reaction(payload: dict, user_id: int, emoji: str, on: bool) -> bool:
    """Store a reaction set (``on``) or taken back; the message is stored first if its own
    batch has not reached SQL yet. Returns whether a row changed."""
    store_messages([payload])
    table = Reaction.__table__
    if on:
        stmt = _insert_ignoring_duplicates([{"message_id": payload["id"], "user_id": user_id,
                                             "emoji": emoji, "created_at": utcnow()}],
                                           table, conflict=None)
    else:
        stmt = delete(table).where(table.c.message_id == payload["id"],
                                   table.c.user_id == user_id, table.c.emoji == emoji)
    changed = db.session.execute(stmt).rowcount > 0
    db.session.commit()
    return changed
