"""Writing messages (and their reactions) to SQL, idempotent on the message id."""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from simplechat.extensions import db
from simplechat.infra.cache import THREAD_PARTICIPANTS
from simplechat.infra.ids import message_id_time
from simplechat.models import (
    Attachment,
    Conversation,
    GenericActivityLog,
    Message,
    MessageEdit,
    Reaction,
    utcnow,
)

# app.extensions' list of callables given the payloads a batch newly stores, inside its
# transaction (before the commit; they must not commit): the features above this one that keep
# SQL of their own in step with the messages (thread follows, drafts), handed in at start-up.
STORED_LISTENERS = "simplechat.stored_listeners"


def insert_ignoring_duplicates(rows: list[dict], table=None,
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
    a row. Also moves each conversation's last activity forward (main-flow messages only: a
    thread reply does not), recomputes the thread summaries of the roots the new rows reply
    to, tells the STORED_LISTENERS and logs "message_sent" for each new row, in the same
    transaction.
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
            "thread_id": p.get("thread_id") or None,
            "also_to_conversation": bool(p.get("thread_id") and p.get("also_to_conversation")),
        }
    existing = set(
        db.session.scalars(db.select(Message.id).where(Message.id.in_(list(rows))))
    )
    new_rows = [row for key, row in rows.items() if key not in existing]
    if new_rows:
        stmt = insert_ignoring_duplicates(new_rows)
        if db.session.get_bind().dialect.name in ("postgresql", "sqlite"):
            # Only the rows this statement inserted: a concurrent writer's are not counted twice.
            inserted = set(db.session.scalars(stmt.returning(Message.__table__.c.id)))
            new_rows = [row for row in new_rows if row["id"] in inserted]
        else:
            db.session.execute(stmt)
    if new_rows:
        _refresh_thread_summaries(new_rows)
        latest: dict[int, object] = {}
        for row in new_rows:
            if row["thread_id"] and not row["also_to_conversation"]:
                continue  # a thread reply: the conversation's own flow has not moved
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
        new_ids = {row["id"] for row in new_rows}
        stored = [p for p in payloads if p["id"] in new_ids]
        for listener in current_app.extensions.get(STORED_LISTENERS, ()):
            listener(stored)
    db.session.commit()
    return [row["id"] for row in new_rows]


def _refresh_thread_summaries(new_rows: list[dict]) -> None:
    """Keep the ``thread`` summary of every root the new rows touch: the number of replies,
    the newest one's time, and the first repliers in the order they first replied.

    A root stored earlier counts its new replies on from its row (locked, so two writers do
    not count over each other): the cost of a reply does not grow with its thread. A root new
    in this batch is counted from SQL, as a reply can be stored before its root (edited
    before its root's batch stored the root, or in the same batch)."""
    new_roots = {row["id"] for row in new_rows if not row["thread_id"]}
    added: dict[str, list] = {}  # root -> [replies, newest, {sender: first reply}]
    for row in new_rows:
        root = row["thread_id"]
        if root and root not in new_roots:
            entry = added.setdefault(root, [0, row["created_at"], {}])
            entry[0] += 1
            entry[1] = max(entry[1], row["created_at"])
            first = entry[2].get(row["sender_id"])
            entry[2][row["sender_id"]] = row["created_at"] if first is None else min(
                first, row["created_at"])
    changes = _counted_on(added) + _counted_from_sql(
        new_roots, {row["conversation_id"] for row in new_rows})
    if not changes:
        return
    table = Message.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("root"))
        .values(reply_count=bindparam("n"), last_reply_at=bindparam("newest"),
                thread_participants=bindparam("people")), changes)


def _counted_on(added: dict[str, list]) -> list[dict]:
    """The new summaries of stored roots, from their rows and the replies added to them."""
    if not added:
        return []
    table = Message.__table__
    stored = db.session.execute(
        select(table.c.id, table.c.reply_count, table.c.last_reply_at,
               table.c.thread_participants)
        .where(table.c.id.in_(list(added))).with_for_update()).all()
    changes = []
    for root, count, newest, people in stored:
        n, last, first_replies = added[root]
        people = list(people or [])
        for _, sender in sorted((at, uid) for uid, at in first_replies.items()):
            if sender not in people and len(people) < THREAD_PARTICIPANTS:
                people.append(sender)
        changes.append({"root": root, "n": (count or 0) + n,
                        "newest": last if newest is None else max(newest, last),
                        "people": people})
    return changes


def _counted_from_sql(roots: set[str], conversations: set[int]) -> list[dict]:
    """The summaries of roots new in this batch that have replies stored (usually none), as
    SQL has them: three statements whatever the number of roots."""
    if not roots:
        return []
    replies = (Message.conversation_id.in_(conversations), Message.thread_id.in_(roots))
    counts = db.session.execute(
        select(Message.thread_id, func.count(), func.max(Message.created_at))
        .where(*replies).group_by(Message.thread_id)).all()
    if not counts:
        return []
    first_replies = db.session.execute(
        select(Message.thread_id, Message.sender_id, func.min(Message.created_at))
        .where(Message.conversation_id.in_(conversations),
               Message.thread_id.in_({root for root, _, _ in counts}))
        .group_by(Message.thread_id, Message.sender_id)).all()
    repliers: dict[str, list[tuple]] = {}
    for root, sender_id, first in first_replies:
        repliers.setdefault(root, []).append((first, sender_id))
    return [{"root": root, "n": n, "newest": newest,
             "people": [uid for _, uid in sorted(repliers.get(root, []))][:THREAD_PARTICIPANTS]}
            for root, n, newest in counts]


def apply_message_change(payload: dict, changed_at: datetime, previous: str | None = None
                         ) -> bool:
    """Store an edit or a deletion; returns whether the row changed. An edit that changes the
    row keeps ``previous``, the text it replaced, in ``message_edits`` (same transaction).

    Independent of the order in which tasks run: a change that arrives before the message's own
    write stores the message first; an older edit never overwrites a newer one; nothing
    overwrites a deletion.
    """
    store_messages([payload])
    table = Message.__table__
    stmt = update(table).where(table.c.id == payload["id"], table.c.deleted_at.is_(None))
    if payload.get("deleted"):
        stmt = stmt.values(text="", html="", mentions=None, deleted_at=changed_at,
                           deleted_by=payload.get("deleted_by"))
        # Its files are no longer served (the caller removes them from the store).
        db.session.execute(update(Attachment).where(
            Attachment.message_id == payload["id"], Attachment.deleted_at.is_(None),
        ).values(deleted_at=changed_at))
    else:
        stmt = stmt.where(or_(table.c.edited_at.is_(None), table.c.edited_at < changed_at))
        stmt = stmt.values(text=payload["message"], html=payload.get("html"),
                           mentions=payload.get("mentions") or None, edited_at=changed_at)
    changed = db.session.execute(stmt).rowcount > 0
    if changed and previous is not None and not payload.get("deleted"):
        db.session.add(MessageEdit(message_id=payload["id"], text=previous,
                                   replaced_at=changed_at))
    db.session.commit()
    return changed


def apply_reaction(payload: dict, user_id: int, emoji: str, on: bool) -> bool:
    """Store a reaction set (``on``) or taken back; the message is stored first if its own
    batch has not reached SQL yet. Returns whether a row changed."""
    store_messages([payload])
    table = Reaction.__table__
    if on:
        stmt = insert_ignoring_duplicates([{"message_id": payload["id"], "user_id": user_id,
                                             "emoji": emoji, "created_at": utcnow()}],
                                           table, conflict=None)
    else:
        stmt = delete(table).where(table.c.message_id == payload["id"],
                                   table.c.user_id == user_id, table.c.emoji == emoji)
    changed = db.session.execute(stmt).rowcount > 0
    db.session.commit()
    return changed
