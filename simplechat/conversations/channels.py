"""Channels: creating one (public or private, its creator the owner), joining and leaving a
public one, the directory of public channels, and who may read a conversation's messages (its
members; anyone signed in for a public channel, a read-only preview)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from simplechat.answers import error
from simplechat.conversations.groups import (
    MAX_TITLE,
    announce,
    conversation_state,
    max_members,
    newest_message_id,
)
from simplechat.conversations.records import participant_conversation
from simplechat.conversations.roles import role_of
from simplechat.extensions import db
from simplechat.infra.membership import commit_members_change, valid_conversation_id
from simplechat.infra.services import services
from simplechat.messaging import system_lines
from simplechat.messaging.send import clean_text
from simplechat.models import (
    MAX_DESCRIPTION,
    MEMBER,
    OWNER,
    PRIVATE,
    PUBLIC,
    Conversation,
    Participant,
    User,
)
from simplechat.observability.activity import record_activity
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room

log = logging.getLogger(__name__)

CHANNEL_VISIBILITIES = (PUBLIC, PRIVATE)


def _plain(value: object, limit: int, *, required: bool) -> tuple[str, dict | None]:
    """A title or description as stored (trimmed, no control characters), or the refusal."""
    if not isinstance(value, str):
        return "", error("invalid")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "", error("invalid")
    value = clean_text(value)
    if required:
        value = " ".join(value.split())  # a title is one line
    if len(value) > limit:
        return "", error("too_long", max_length=limit)
    if required and not value:
        return "", error("empty")
    return value, None


def create_channel(creator: User, title: object, description: object = "",
                   visibility: object = PUBLIC, *, limited: bool = True,
                   members: list[User] = ()) -> tuple[Conversation | None, dict | None]:
    """A new channel with its creator as owner (and ``members``, from the command line), or
    the refusal: ``invalid``, ``empty`` or ``too_long`` for the fields, ``too_many`` past
    CHAT_MAX_MEMBERS, ``rate_limited`` (``limited``: it counts against the creator's
    CHAT_CONVERSATION_RATE_LIMIT, as any new conversation does)."""
    if visibility not in CHANNEL_VISIBILITIES:
        return None, error("invalid")
    title, refusal = _plain(title, MAX_TITLE, required=True)
    if refusal:
        return None, refusal
    description, refusal = _plain("" if description is None else description,
                                  MAX_DESCRIPTION, required=False)
    if refusal:
        return None, refusal
    others = [u for u in {u.id: u for u in members}.values() if u.id != creator.id]
    if len(others) + 1 > max_members():
        return None, error("too_many", max_participants=max_members())
    if limited:
        wait = services().conversation_limiter.hit(f"conversation:{creator.id}")
        if wait:
            return None, error("rate_limited", retry_after=round(wait, 3))
    conversation = Conversation(title=title, is_group=True, visibility=visibility,
                                description=description, created_by_id=creator.id)
    conversation.participants = [Participant(user_id=creator.id, role=OWNER),
                                 *(Participant(user_id=u.id, role=MEMBER) for u in others)]
    db.session.add(conversation)
    db.session.flush()  # its id, for the cache's keys
    commit_members_change([conversation.id], [creator.id, *(u.id for u in others)])
    return conversation, None


def join_channel(user: User, data: dict) -> dict:
    """Join a public channel that is not archived (anything else: ``forbidden``); joining one
    already joined answers the same. The channel hears a system line."""
    conversation_id = data.get("conversation_id")
    if not valid_conversation_id(conversation_id):
        return error("invalid")
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None or conversation.visibility != PUBLIC or conversation.archived:
        return error("forbidden")
    role = role_of(user.id, conversation.id)
    if role is not None:
        return {"ok": True, "conversation": conversation_state(conversation, user.id)}
    limit = max_members()
    if member_count(conversation.id) >= limit:
        return error("too_many", max_participants=limit)
    # What was said before joining is history, not unread.
    db.session.add(Participant(conversation_id=conversation.id, user_id=user.id, role=MEMBER,
                               last_read_message_id=newest_message_id(conversation.id)))
    try:
        commit_members_change([conversation.id], [user.id])
    except IntegrityError:  # joined at the same moment from another tab
        db.session.rollback()
        return {"ok": True, "conversation": conversation_state(conversation, user.id)}
    record_activity("channel_joined", user.id, {"conversation_id": conversation.id})
    # The open pages of the channel and the joiner's own: in a big channel, not every
    # member's list (its member count is read when the list is).
    state = announce(conversation, everyone=False, extra_user_ids=[user.id])
    system_lines.joined(user, conversation.id)
    return {"ok": True, "conversation": {**state, "role": MEMBER}}


def member_count(conversation_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(Participant)
                             .where(Participant.conversation_id == conversation_id)) or 0


def readable_conversation(user_id: int, conversation_id: int) -> Conversation | None:
    """The conversation if the user may read its messages: a member, or anyone for a public
    channel (a preview: reading does not make one a member)."""
    conversation = participant_conversation(user_id, conversation_id)
    if conversation is not None:
        return conversation
    conversation = db.session.get(Conversation, conversation_id)
    return conversation if conversation is not None and conversation.visibility == PUBLIC \
        else None


# ----------------------------------------------------------------------------- the directory

SORTS = ("members", "recent", "name")
MAX_PAGE = 100
# A cursor is the last entry's sort key and id: "m<member count>", "r<microseconds since
# 1970 of its activity>" or "n<its lower-cased name, UTF-8 in hex>", then ".<id>". Any string
# of the pattern is a cursor (out of range numbers are clamped); one of another sort starts
# from the top.
CURSOR_PATTERN = r"^(m[0-9]{1,19}|r[0-9]{1,19}|n(?:[0-9a-f]{2}){0,480})\.[0-9]{1,19}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1)
_LAST_MICROS = (datetime(9999, 12, 31) - _EPOCH) // timedelta(microseconds=1)
_MAX_INT = 2**63 - 1


@dataclass
class DirectoryPage:
    channels: list[dict]
    next_before: str | None


def _cursor(sort: str, key: object, conversation_id: int) -> str:
    if sort == "members":
        text = f"m{key}"
    elif sort == "recent":
        text = f"r{(key - _EPOCH) // timedelta(microseconds=1)}"
    else:
        text = "n" + key.encode("utf-8").hex()
    return f"{text}.{conversation_id}"


def parse_directory_cursor(sort: str, value: object) -> tuple[object, int] | None:
    """The (key, id) a cursor passed back as ``before`` holds; None if it is not one, or is
    another sort's (the first page then)."""
    if not isinstance(value, str) or not _CURSOR.fullmatch(value):
        return None
    text, _, conversation_id = value.partition(".")
    kind, raw = text[0], text[1:]
    if kind != sort[0]:
        return None
    if kind == "m":
        key: object = min(int(raw), _MAX_INT)
    elif kind == "r":
        key = _EPOCH + timedelta(microseconds=min(int(raw), _LAST_MICROS))
    else:  # a name: no NUL (no database stores one), bytes that are not UTF-8 replaced
        key = bytes.fromhex(raw).decode("utf-8", errors="replace").replace("\x00", "")
    return key, min(int(conversation_id), _MAX_INT)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def directory(user: User, q: str = "", sort: str = "members", limit: int = 50,
              before: tuple[object, int] | None = None) -> DirectoryPage:
    """A page of the public channels not archived, whose title or description holds ``q``
    (any case), by member count (most first), recent activity (newest first) or name (A to
    Z); each with ``joined`` for the user. One statement, whatever the number of channels."""
    counts = (select(Participant.conversation_id, func.count().label("n"))
              .join(Conversation, Conversation.id == Participant.conversation_id)
              .where(Conversation.visibility == PUBLIC, Conversation.archived.is_(False))
              .group_by(Participant.conversation_id).subquery())
    mine = (select(Participant.conversation_id, Participant.role)
            .where(Participant.user_id == user.id).subquery())
    n = func.coalesce(counts.c.n, 0)
    activity = func.coalesce(Conversation.last_message_at, Conversation.created_at)
    name = func.lower(func.coalesce(Conversation.title, ""))
    stmt = (select(Conversation, n, mine.c.role, activity, name)
            .outerjoin(counts, counts.c.conversation_id == Conversation.id)
            .outerjoin(mine, mine.c.conversation_id == Conversation.id)
            .where(Conversation.visibility == PUBLIC, Conversation.archived.is_(False)))
    q = " ".join(q.split()).lower()
    if q:
        pattern = f"%{_escape_like(q)}%"
        stmt = stmt.where(or_(name.like(pattern, escape="\\"),
                              func.lower(Conversation.description).like(pattern, escape="\\")))
    key = {"members": n, "recent": activity, "name": name}[sort]
    ascending = sort == "name"
    order = ((key.asc(), Conversation.id.asc()) if ascending
             else (key.desc(), Conversation.id.desc()))
    if before is not None:
        k, i = before
        stmt = stmt.where(or_(key > k, and_(key == k, Conversation.id > i)) if ascending
                          else or_(key < k, and_(key == k, Conversation.id < i)))
    rows = db.session.execute(stmt.order_by(*order).limit(limit + 1)).all()
    channels = [_directory_entry(c, count, role) for c, count, role, _, _ in rows[:limit]]
    next_before = None
    if len(rows) > limit:
        # The cursor holds the sort key as the database computed it (its lower() is not
        # Python's for every alphabet).
        last, count, _role, at, lowered = rows[limit - 1]
        value = {"members": int(count), "recent": _datetime(at), "name": lowered}[sort]
        next_before = _cursor(sort, value, last.id)
    return DirectoryPage(channels, next_before)


def _datetime(value: datetime | str) -> datetime:
    # SQLite may hand back coalesce() of two timestamps as text.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _directory_entry(conversation: Conversation, count: int, role: str | None) -> dict:
    at = conversation.last_message_at
    return {"id": conversation.id, "title": conversation.title, "is_group": True,
            "visibility": conversation.visibility, "description": conversation.description,
            "archived": bool(conversation.archived), "member_count": int(count),
            "role": role, "joined": role is not None,
            "last_activity": (at or conversation.created_at).strftime("%Y-%m-%d %H:%M:%S")}


def tell_created(conversation: Conversation, creator: User) -> dict:
    """The creator's other pages and devices learn of the new channel; returns its STATE."""
    state = conversation_state(conversation, creator.id)
    emit_to([user_room(creator.id)], "conversation_updated", state)
    return state

