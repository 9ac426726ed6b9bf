"""Read state: the newest message each participant has read, and unread counts derived from it.

Counts are of the main flow: a thread reply is counted in its thread (threads.following), unless
it was sent ``also_to_conversation``."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import String, and_, case, cast, func, or_, select, tuple_, update

from simplechat.answers import error
from simplechat.extensions import db
from simplechat.infra.ids import message_id_time, parse_message_id
from simplechat.infra.membership import membership, valid_conversation_id
from simplechat.messaging.history import cached_messages
from simplechat.messaging.payload import SYSTEM
from simplechat.models import Message, Participant, User
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import room, user_room


def _message_exists(conversation_id: int, message_id: str) -> bool:
    if any(m["id"] == message_id for m in cached_messages(conversation_id)):
        return True
    found = db.session.scalar(select(Message.conversation_id).where(Message.id == message_id))
    return found == conversation_id


def _main_flow():
    """The messages of the main flow: no thread reply but those also sent to it."""
    return or_(Message.thread_id.is_(None), Message.also_to_conversation.is_(True))


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
        _main_flow(),
        or_(Participant.last_read_message_id.is_(None),
            Message.id > Participant.last_read_message_id),
    )


def _of(user_id: int, conversation_ids: list[int] | None):
    """The user's participant rows: all of them, or those of the given conversations."""
    mine = Participant.user_id == user_id
    return mine if conversation_ids is None else and_(
        mine, Participant.conversation_id.in_(conversation_ids))


class Unread(NamedTuple):
    """A conversation's unread messages for one user: how many, the newest of them, and how
    many of them mention the user."""
    count: int
    newest: str
    mentions: int


NOTHING_UNREAD = Unread(0, "", 0)


def mentioning(user_id: int):
    """Whether a message's JSON list of mentioned ids holds ``user_id`` (an ``@all``
    included), exactly, on every database: the list's text has the id between ``[`` or a
    comma and ``]`` or a comma (``[7, 17]`` holds 7 and 17, never 1), whether the database
    keeps the spaces after the commas or not."""
    text = cast(Message.mentions, String)
    n = int(user_id)
    return or_(*(text.like(pattern) for pattern in (
        f"[{n}]", f"[{n},%", f"%,{n}]", f"%, {n}]", f"%,{n},%", f"%, {n},%")))


def unread_state(user_id: int, conversation_ids: list[int] | None = None
                 ) -> dict[int, Unread]:
    """Per conversation of the user (or of those given) with anything unread: how many
    messages, the newest of them, and how many mention the user.

    One statement, so one snapshot: the newest id says which messages both counts hold. The
    list's other reads (its last messages) are statements of their own, which a message
    written in between is in and these counts are not; the page adds only what is newer than
    this id, so a message stored meanwhile is counted once, as unread and as a mention."""
    rows = db.session.execute(
        select(Participant.conversation_id, func.count(Message.id), func.max(Message.id),
               func.coalesce(func.sum(case((mentioning(user_id), 1), else_=0)), 0))
        .join(Message, _unread())
        .where(_of(user_id, conversation_ids))
        .group_by(Participant.conversation_id)
    ).all()
    return {cid: Unread(n, newest, int(mentions)) for cid, n, newest, mentions in rows}


def unread_counts(user_id: int) -> dict[int, int]:
    """Per conversation of the user: how many messages are unread."""
    return {cid: state.count for cid, state in unread_state(user_id).items()}


def unread_mentions(user_id: int, conversation_ids: list[int] | None = None
                    ) -> dict[int, int]:
    """Per conversation of the user (or of those given): how many unread messages mention
    them (an ``@all`` included), for the list's badge."""
    return {cid: state.mentions for cid, state in unread_state(user_id, conversation_ids).items()
            if state.mentions}


def mark_unread(user: User, data: dict) -> dict:
    """Move the user's read marker back to just before ``message_id`` (a main-flow message):
    it and everything after it are unread again, everything before it read. The user's other
    pages and devices hear ``marked_unread`` with the new counts."""
    conversation_id = data.get("conversation_id")
    message_id = parse_message_id(data.get("message_id"))
    if not valid_conversation_id(conversation_id) or message_id is None:
        return error("invalid")
    if not membership().members_among(conversation_id, [user.id]):
        return error("forbidden")
    found, previous = _place_in_main_flow(conversation_id, message_id)
    if not found:
        return error("not_found")
    db.session.execute(
        update(Participant)
        .where(Participant.conversation_id == conversation_id, Participant.user_id == user.id)
        .values(last_read_message_id=previous))
    db.session.commit()
    # The cached markers only move forward (read_moved): drop them, SQL has the new one.
    membership().changed([conversation_id], [])
    unread, mentions = unread_now(user.id, conversation_id, previous)
    notice = {"conversation_id": conversation_id, "user_id": user.id, "message_id": message_id,
              "last_read": previous, "unread": unread, "unread_mentions": mentions}
    emit_to(user_room(user.id), "marked_unread", notice)
    return {"ok": True, "last_read": previous, "unread": unread, "unread_mentions": mentions}


def _place_in_main_flow(conversation_id: int, message_id: str) -> tuple[bool, str | None]:
    """Whether ``message_id`` is a message of the conversation's main flow, and the id of the
    one before it there (None: it is the first). The recent list answers when it holds both;
    SQL otherwise (one statement each, on the (conversation, time, id) index)."""
    cached = cached_messages(conversation_id)
    ids = [m["id"] for m in cached]
    if message_id in ids and ids.index(message_id) > 0:
        return True, ids[ids.index(message_id) - 1]
    flow = (Message.conversation_id == conversation_id, _main_flow())
    found = message_id in ids or db.session.scalar(
        select(Message.id).where(Message.id == message_id, *flow)) is not None
    if not found:
        return False, None
    when = message_id_time(message_id)
    previous = db.session.scalar(
        select(Message.id).where(*flow)
        .where(tuple_(Message.created_at, Message.id) < tuple_(when, message_id))
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(1))
    return True, previous


def unread_now(user_id: int, conversation_id: int, marker: str | None) -> tuple[int, int]:
    """The user's unread and unread-mention counts in one conversation: SQL's, and the
    messages the recent list holds that SQL has not stored yet."""
    count, counted, mentions = unread_state(user_id, [conversation_id]).get(conversation_id,
                                                                           NOTHING_UNREAD)
    counted = max(counted or "", marker or "")
    waiting = [m for m in cached_messages(conversation_id)
               if m["id"] > counted and m.get("sender") != user_id
               and m.get("kind") != SYSTEM and not m.get("deleted")]
    return (count + len(waiting),
            mentions + sum(user_id in (m.get("mentions") or []) for m in waiting))
