"""Following threads: who follows which (the root's author, anyone who replies and anyone
mentioned in a reply, when the reply is stored; or by hand), each follower's read marker in a
thread, and the followed threads with their unread counts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import aliased

from simplechat.answers import TIMESTAMP_FORMAT, error
from simplechat.attachments.records import attachments_for
from simplechat.extensions import db
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import membership, valid_conversation_id
from simplechat.messaging.formatting import mention_candidates
from simplechat.messaging.mentions import ALL
from simplechat.messaging.payload import payload_from_row
from simplechat.messaging.read_state import mentioning
from simplechat.messaging.replies import find_message
from simplechat.messaging.storage import insert_ignoring_duplicates
from simplechat.messaging.stored import reactions_for, summaries_for
from simplechat.models import Message, Participant, ThreadFollow, User, utcnow
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room
from simplechat.threads.reading import find_root

# ------------------------------------------------------------------------- following by hand


def _thread_of(user_id: int, data: dict) -> tuple[int | None, str | None, dict | None]:
    """The conversation and root a payload names, if the user may use them, else the refusal:
    ``invalid`` for a malformed one or no root of that conversation, ``forbidden`` for a
    conversation the user takes no part in."""
    conversation_id, root, refusal = _root_of(user_id, data)
    return conversation_id, root and root["id"], refusal


def _root_of(user_id: int, data: dict) -> tuple[int | None, dict | None, dict | None]:
    """``_thread_of`` with the root message itself."""
    conversation_id = data.get("conversation_id")
    root_id = parse_message_id(data.get("thread_id"))
    if not valid_conversation_id(conversation_id) or root_id is None:
        return None, None, error("invalid")
    if not membership().members_among(conversation_id, [user_id]):
        return None, None, error("forbidden")
    root = find_root(conversation_id, root_id)
    if root is None:
        return None, None, error("invalid")
    return conversation_id, root, None


def follow_thread(user: User, data: dict) -> dict:
    """``follow_thread``: follow a thread (``on`` true) or stop following it; the user's other
    pages and devices hear ``thread_followed``."""
    on = data.get("on")
    if not isinstance(on, bool):
        return error("invalid")
    conversation_id, root_id, refusal = _thread_of(user.id, data)
    if refusal:
        return refusal
    _ensure_rows(user.id, conversation_id, root_id, following=on)
    db.session.execute(update(ThreadFollow).where(
        ThreadFollow.user_id == user.id, ThreadFollow.thread_id == root_id,
    ).values(following=on, updated_at=utcnow()))
    db.session.commit()
    emit_to(user_room(user.id), "thread_followed",
            {"conversation_id": conversation_id, "thread_id": root_id, "following": on})
    return {"ok": True, "following": on}


def thread_read(user: User, data: dict) -> dict:
    """``thread_read``: move the user's read marker in a thread forward to ``message_id`` (one
    of its replies, or the root: nothing read); never backward. The user's other pages and
    devices hear ``thread_read``. Reading does not make one follow."""
    message_id = parse_message_id(data.get("message_id"))
    if message_id is None:
        return error("invalid")
    conversation_id, root, refusal = _root_of(user.id, data)
    if refusal:
        return refusal
    root_id = root["id"]
    if message_id != root_id:
        found = find_message(conversation_id, message_id)
        if found is None or found.get("thread_id") != root_id:
            return error("not_found")
    # A row made here holds the marker; the root's author follows their thread unless they
    # stop (follow_stored reads a row's false as "stopped"), so theirs is made following.
    _ensure_rows(user.id, conversation_id, root_id,
                 following=str(root.get("sender")) == str(user.id))
    moved = db.session.execute(update(ThreadFollow).where(
        ThreadFollow.user_id == user.id, ThreadFollow.thread_id == root_id,
        or_(ThreadFollow.last_read_message_id.is_(None),
            ThreadFollow.last_read_message_id < message_id),
    ).values(last_read_message_id=message_id, updated_at=utcnow())).rowcount
    db.session.commit()
    last_read = db.session.scalar(select(ThreadFollow.last_read_message_id).where(
        ThreadFollow.user_id == user.id, ThreadFollow.thread_id == root_id))
    if moved:
        emit_to(user_room(user.id), "thread_read",
                {"conversation_id": conversation_id, "thread_id": root_id, "user_id": user.id,
                 "message_id": message_id})
    return {"ok": True, "last_read": last_read}


def _ensure_rows(user_id: int, conversation_id: int, root_id: str, following: bool) -> None:
    """The user's row for a thread, made (with ``following``) if there is none."""
    db.session.execute(insert_ignoring_duplicates(
        [{"user_id": user_id, "conversation_id": conversation_id, "thread_id": root_id,
          "following": following, "updated_at": utcnow()}],
        ThreadFollow.__table__, conflict=("user_id", "thread_id")))


# ------------------------------------------------------------------------- following on reply


def follow_stored(payloads: list[dict]) -> None:
    """For the messages a batch newly stores (in its transaction): each thread reply's sender
    follows its thread and has read it up to the reply, anyone it mentions by name follows it
    (an ``@all`` makes no one follow), and the root's author follows it unless they stopped.
    A fixed number of statements whatever the batch."""
    replies = [p for p in payloads if p.get("thread_id")]
    if not replies:
        return
    roots = {p["thread_id"] for p in replies}
    authors = dict(db.session.execute(
        select(Message.id, Message.sender_id).where(Message.id.in_(roots))).all())
    # (user, root) -> [conversation, follow again even if stopped, read up to]
    wanted: dict[tuple[int, str], list] = {}

    def want(user_id: int, reply: dict, force: bool, read: str | None = None) -> None:
        entry = wanted.setdefault((user_id, reply["thread_id"]),
                                  [reply["conversation_id"], False, None])
        entry[1] = entry[1] or force
        if read and (entry[2] is None or read > entry[2]):
            entry[2] = read

    for reply in replies:
        if reply["thread_id"] in authors:
            want(authors[reply["thread_id"]], reply, force=False)
        if ALL not in mention_candidates(reply.get("message") or ""):
            for mentioned in reply.get("mentions") or []:
                want(mentioned, reply, force=True)
        want(int(reply["sender"]), reply, force=True, read=reply["id"])
    users = {user_id for user_id, _ in wanted}
    existing = {(uid, root): (following, marker) for uid, root, following, marker in
                db.session.execute(select(
                    ThreadFollow.user_id, ThreadFollow.thread_id, ThreadFollow.following,
                    ThreadFollow.last_read_message_id,
                ).where(ThreadFollow.user_id.in_(users), ThreadFollow.thread_id.in_(roots)))}
    now = utcnow()
    new = [{"user_id": uid, "conversation_id": cid, "thread_id": root, "following": True,
            "last_read_message_id": read, "updated_at": now}
           for (uid, root), (cid, _force, read) in wanted.items()
           if (uid, root) not in existing]
    if new:
        db.session.execute(insert_ignoring_duplicates(
            new, ThreadFollow.__table__, conflict=("user_id", "thread_id")))
    changed = []
    for (uid, root), (_cid, force, read) in wanted.items():
        if (uid, root) not in existing:
            continue
        following, marker = existing[(uid, root)]
        if (force and not following) or (read and (marker is None or read > marker)):
            changed.append({"u": uid, "root": root, "on": bool(following or force),
                            "read": max(read or "", marker or "") or None, "now": now})
    if changed:
        table = ThreadFollow.__table__
        db.session.execute(
            update(table).where(table.c.user_id == bindparam("u"),
                                table.c.thread_id == bindparam("root"))
            .values(following=bindparam("on"), last_read_message_id=bindparam("read"),
                    updated_at=bindparam("now")), changed)


# ------------------------------------------------------------------------- followed threads

DEFAULT_PAGE = 50
MAX_PAGE = 200
_EPOCH = datetime(1970, 1, 1)
# A cursor: the last thread's activity in microseconds since 1970 (UTC), "-", its root's id.
CURSOR_PATTERN = (r"^[0-9]{1,16}-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{12}$")
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class ThreadCursor:
    at: datetime
    root_id: str

    def __str__(self) -> str:
        return f"{(self.at - _EPOCH) // timedelta(microseconds=1)}-{self.root_id}"


def parse_thread_cursor(value: object) -> ThreadCursor | None:
    if not isinstance(value, str) or not _CURSOR.fullmatch(value):
        return None
    micros, _, root_id = value.partition("-")
    return ThreadCursor(_EPOCH + timedelta(microseconds=int(micros)), root_id.lower())


def followed_threads(user_id: int, unread_only: bool = False, limit: int = DEFAULT_PAGE,
                     before: ThreadCursor | None = None) -> dict:
    """The threads the user follows in conversations they take part in, newest reply first:
    each with its root, how many replies from others are newer than the user's marker
    (``unread``), how many of those mention the user (``unread_mentions``), and the time of
    the newest reply; with ``unread_only``, those with unread replies only. Counts are of
    stored replies. Five statements whatever the number of threads."""
    limit = min(max(limit, 1), MAX_PAGE)
    root = aliased(Message)
    follow = ThreadFollow
    unread_join = and_(
        Message.conversation_id == follow.conversation_id,
        Message.thread_id == follow.thread_id,
        Message.sender_id != follow.user_id,
        Message.deleted_at.is_(None),
        or_(follow.last_read_message_id.is_(None), Message.id > follow.last_read_message_id),
    )
    # The counts per followed thread (grouped by the follow's own columns only: a root's JSON
    # columns cannot be grouped on PostgreSQL), then the roots, in one statement.
    counts = (
        select(follow.thread_id, follow.conversation_id, follow.last_read_message_id,
               func.count(Message.id).label("unread"))
        .join(Participant, and_(Participant.conversation_id == follow.conversation_id,
                                Participant.user_id == follow.user_id))
        .outerjoin(Message, unread_join)
        .where(follow.user_id == user_id, follow.following.is_(True))
        .group_by(follow.thread_id, follow.conversation_id, follow.last_read_message_id)
        .subquery()
    )
    activity = func.coalesce(root.last_reply_at, root.created_at)
    query = (
        select(root, counts.c.last_read_message_id, counts.c.unread,
               activity.label("activity"))
        .join(counts, and_(root.id == counts.c.thread_id,
                           root.conversation_id == counts.c.conversation_id))
        .order_by(activity.desc(), root.id.desc())
        .limit(limit + 1)
    )
    if unread_only:
        query = query.where(counts.c.unread > 0)
    if before is not None:
        query = query.where(or_(activity < before.at,
                                and_(activity == before.at, root.id < before.root_id)))
    rows = db.session.execute(query).all()
    next_before = (str(ThreadCursor(rows[limit - 1].activity, rows[limit - 1][0].id))
                   if len(rows) > limit else None)
    rows = rows[:limit]
    roots = [row[0] for row in rows]
    mentions = _unread_mentions(user_id, [r.id for r in roots])
    payloads = _root_payloads(roots)
    return {"ok": True, "threads": [{
        "conversation_id": r.conversation_id, "thread_id": r.id, "root": payloads[r.id],
        "unread": count, "unread_mentions": mentions.get(r.id, 0),
        "last_reply_at": r.last_reply_at.strftime(TIMESTAMP_FORMAT) if r.last_reply_at else None,
        "last_read": marker,
    } for r, marker, count, _at in rows], "next_before": next_before}


def _unread_mentions(user_id: int, root_ids: list[str]) -> dict[str, int]:
    """Per thread: how many of the user's unread replies mention them."""
    if not root_ids:
        return {}
    rows = db.session.execute(
        select(ThreadFollow.thread_id, func.count(Message.id))
        .join(Message, and_(
            Message.conversation_id == ThreadFollow.conversation_id,
            Message.thread_id == ThreadFollow.thread_id,
            Message.sender_id != ThreadFollow.user_id,
            Message.deleted_at.is_(None),
            or_(ThreadFollow.last_read_message_id.is_(None),
                Message.id > ThreadFollow.last_read_message_id)))
        .where(ThreadFollow.user_id == user_id, ThreadFollow.thread_id.in_(root_ids),
               mentioning(user_id))
        .group_by(ThreadFollow.thread_id)
    ).all()
    return {root_id: n for root_id, n in rows}


def _root_payloads(roots: list[Message]) -> dict[str, dict]:
    """The payloads of stored roots of any conversations: one statement each for their
    senders' names, the quotes they answer, reactions and attachments."""
    if not roots:
        return {}
    ids = [r.id for r in roots]
    names = {u.id: u.full_name for u in db.session.scalars(
        select(User).where(User.id.in_({r.sender_id for r in roots})))}
    quotes, reactions, files = summaries_for(roots), reactions_for(ids), attachments_for(ids)
    return {r.id: payload_from_row(
        r, names, reactions=reactions.get(r.id), attachments=files.get(r.id),
        reply_to=None if not r.reply_to_id else quotes.get(r.reply_to_id) or {
            "id": r.reply_to_id, "sender": None, "sender_name": None, "preview": ""},
    ) for r in roots}
