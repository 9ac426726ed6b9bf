"""Stored messages as payloads: SQL rows with what SQL holds beside them (the senders' names,
the quoted originals of replies, reactions and attachments), one query each."""

from __future__ import annotations

from sqlalchemy import select

from simplechat.attachments.records import attachments_for
from simplechat.extensions import db
from simplechat.messaging.payload import PREVIEW_LENGTH, payload_from_row
from simplechat.models import Message, Participant, Reaction, User


def sender_names(conversation_id: int, rows: list[Message]) -> dict[int, str]:
    """Display names of the senders of ``rows``, former participants included."""
    users = db.session.scalars(
        select(User).join(Participant, Participant.user_id == User.id)
        .where(Participant.conversation_id == conversation_id)
    )
    names = {u.id: u.full_name for u in users}
    missing = {r.sender_id for r in rows} - names.keys()
    if missing:  # former participants keep their names on old messages
        for u in db.session.scalars(select(User).where(User.id.in_(missing))):
            names[u.id] = u.full_name
    return names


def payloads_of_rows(conversation_id: int, rows: list[Message]) -> list[dict]:
    """The payloads of stored messages with what SQL holds beside them: the quoted originals
    of replies, reactions and attachments (one query each, only when there are rows)."""
    if not rows:
        return []
    names = sender_names(conversation_id, rows)
    ids = [r.id for r in rows]
    summaries, reactions, files = summaries_for(rows), reactions_for(ids), attachments_for(ids)
    return [payload_from_row(
        r, names, reactions=reactions.get(r.id), attachments=files.get(r.id),
        reply_to=None if not r.reply_to_id else summaries.get(r.reply_to_id) or {
            "id": r.reply_to_id, "sender": None, "sender_name": None, "preview": ""},
    ) for r in rows]


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


def reactions_for(message_ids: list[str]) -> dict[str, dict[str, list[int]]]:
    """Each message's reactions from SQL: emoji -> user ids, both in order of reacting."""
    if not message_ids:
        return {}
    found: dict[str, dict[str, list[int]]] = {}
    for mid, uid, emoji in db.session.execute(
        select(Reaction.message_id, Reaction.user_id, Reaction.emoji)
        .where(Reaction.message_id.in_(message_ids)).order_by(Reaction.id)
    ):
        found.setdefault(mid, {}).setdefault(emoji, []).append(uid)
    return found
