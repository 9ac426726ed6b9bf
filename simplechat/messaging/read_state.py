"""Read state: the newest message each participant has read, and unread counts derived from it."""

from __future__ import annotations

from sqlalchemy import String, and_, cast, func, or_, select, update

from simplechat.answers import error
from simplechat.extensions import db
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import membership, valid_conversation_id
from simplechat.messaging.history import cached_messages
from simplechat.models import Message, Participant, User
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import room, user_room


def _message_exists(conversation_id: int, message_id: str) -> bool:
    if any(m["id"] == message_id for m in cached_messages(conversation_id)):
        return True
    found = db.session.scalar(select(Message.conversation_id).where(Message.id == message_id))
    return found == conversation_id


def mark_read(user: User, data: dict) -> dict:
    """Move the user's read marker forward to ``message_id`` (never backward)."""
    conversation_id = data.get("conversation_id")
    message_id = parse_message_id(data.get("message_id"))
    if not valid_conversation_id(conversation_id) or message_id is None:
        return error("invalid")
    markers = membership().members(conversation_id)
    if user.id not in markers:
        return error("forbidden")
    if not _message_exists(conversation_id, message_id):
        return error("not_found")
    current = markers[user.id]
    if current is not None and current >= message_id:
        return {"ok": True, "last_read": current}  # already read that far: nothing to store
    moved = db.session.execute(
        update(Participant)
        .where(Participant.conversation_id == conversation_id, Participant.user_id == user.id)
        .where(or_(Participant.last_read_message_id.is_(None),
                   Participant.last_read_message_id < message_id))
        .values(last_read_message_id=message_id)
    ).rowcount
    db.session.commit()
    if moved:
        membership().read_moved(conversation_id, user.id, message_id)
        notice = {"conversation_id": conversation_id, "user_id": user.id, "message_id": message_id}
        # The room shows "seen by"; the reader's other devices clear their unread count.
        emit_to([room(conversation_id), user_room(user.id)], "read", notice)
    return {"ok": True, "last_read": max(message_id, current or "")}


def read_markers(conversation_id: int) -> dict[int, str | None]:
    """Each participant's last-read message id (from the membership cache)."""
    return membership().members(conversation_id)


def _unread():
    """The messages from others newer than the user's read marker, in each of their
    conversations (system lines, such as "Nora added Ned", are the timeline's, not unread)."""
    return and_(
        Message.conversation_id == Participant.conversation_id,
        Message.sender_id != Participant.user_id,
        Message.deleted_at.is_(None),
        Message.kind != "system",
        or_(Participant.last_read_message_id.is_(None),
            Message.id > Participant.last_read_message_id),
    )


def unread_state(user_id: int) -> dict[int, tuple[int, str]]:
    """Per conversation of the user: how many messages are unread, and the newest of them.

    One statement, so one snapshot: the newest id says which messages the count holds. The
    list's other reads (its last messages) are statements of their own, which a message
    written in between is in and this count is not; the page adds to the count only what is
    newer than this id."""
    rows = db.session.execute(
        select(Participant.conversation_id, func.count(Message.id), func.max(Message.id))
        .join(Message, _unread())
        .where(Participant.user_id == user_id)
        .group_by(Participant.conversation_id)
    ).all()
    return {cid: (n, newest) for cid, n, newest in rows}


def unread_counts(user_id: int) -> dict[int, int]:
    """Per conversation of the user: how many messages are unread."""
    return {cid: n for cid, (n, _) in unread_state(user_id).items()}


def unread_mentions(user_id: int) -> dict[int, int]:
    """Per conversation of the user: how many unread messages mention them (an ``@all``
    included), for the list's badge. The JSON list of ids is matched as text first, which
    every database can do, then exactly (the text of 7 is in 17 too)."""
    rows = db.session.execute(
        select(Participant.conversation_id, Message.mentions)
        .join(Message, _unread())
        .where(Participant.user_id == user_id,
               cast(Message.mentions, String).like(f"%{int(user_id)}%"))
    ).all()
    counts: dict[int, int] = {}
    for cid, mentioned in rows:
        if isinstance(mentioned, list) and user_id in mentioned:
            counts[cid] = counts.get(cid, 0) + 1
    return counts
