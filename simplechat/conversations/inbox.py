"""The conversation list (the inbox), a page at a time: each conversation with its last message,
unread count, mentions, muting, its first members and the direct peer's presence."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from simplechat.conversations.records import channel_fields, display_title
from simplechat.conversations.roster import Member, first_members
from simplechat.extensions import db
from simplechat.infra.ids import message_id_time
from simplechat.infra.services import services
from simplechat.messaging.formatting import plain_text
from simplechat.messaging.payload import PREVIEW_LENGTH
from simplechat.messaging.payload import SYSTEM as SYSTEM_KIND
from simplechat.messaging.read_state import NOTHING_UNREAD, unread_state
from simplechat.models import Attachment, Conversation, Message, Participant, User
from simplechat.realtime.presence import presence

log = logging.getLogger(__name__)


# A page of the list: DEFAULT_PAGE conversations unless asked for fewer or more (MAX_PAGE).
DEFAULT_PAGE = 50
MAX_PAGE = 200
_EPOCH = datetime(1970, 1, 1)
MAX_ID = 2**63 - 1  # ids are positive 64-bit integers
# A cursor: the activity time in microseconds since 1970 (UTC), "-", the conversation id.
CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9]{1,19}$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass
class ConversationSummary:
    id: int
    title: str
    is_group: bool
    last_id: str | None
    last_text: str | None
    last_sender_id: int | None
    last_at: datetime | None
    last_sender_name: str | None = None
    last_kind: str | None = None  # "system": a line that names its people itself
    # The last message as one line of plain text (no Markdown), or "📎 name" for files alone.
    preview: str | None = None
    unread: int = 0
    mentions: int = 0  # unread messages that mention the user
    # The newest message that ``unread`` accounts for (counted, or read): the page counts
    # only messages newer than this one (see read_state.unread_state).
    counted_upto: str = ""
    muted: bool = False  # by the user: no notifications, not in the title-bar count
    peer_id: int | None = None  # the other person of a direct conversation
    peer_online: bool = False
    peer_last_seen: str | None = None
    visibility: str = "direct"  # direct, private or public
    description: str = ""
    archived: bool = False
    role: str = "member"  # the user's own: owner, admin or member
    member_count: int = 0
    # The first members with their roles, owners and admins first (all of them in a small
    # conversation; a bigger one's are paged by conversations.roster).
    members: list[Member] = field(default_factory=list)


@dataclass
class InboxPage:
    conversations: list[ConversationSummary]
    # The cursor of the next (older) page, None on the last page.
    next_before: str | None


@dataclass(frozen=True)
class Cursor:
    """Where a page of the list ends: its last conversation's activity time and id."""

    at: datetime
    conversation_id: int

    def __str__(self) -> str:
        micros = (self.at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}-{self.conversation_id}"


def parse_cursor(value: object) -> Cursor | None:
    """The cursor a client passed back as ``before``, or None if it is not one. Any string
    of the pattern is a cursor (an id past the largest one means "from the top")."""
    if not isinstance(value, str) or not _CURSOR.fullmatch(value):
        return None
    micros, _, conversation_id = value.partition("-")
    return Cursor(_EPOCH + timedelta(microseconds=int(micros)),
                  min(int(conversation_id), MAX_ID))


def _peer_presence(user_ids: list[int]) -> dict[int, dict]:
    """Presence of the list's direct peers in one round trip; a nicety, so never an error."""
    try:
        return presence().status(user_ids) if user_ids else {}
    except Exception:
        log.warning("presence unavailable for the conversation list", exc_info=True)
        return {}


def conversations_for(user: User) -> list[ConversationSummary]:
    """The first page of the user's conversations, newest activity first."""
    return inbox_page(user).conversations


def inbox_page(user: User, limit: int = DEFAULT_PAGE, before: Cursor | None = None,
               only: int | None = None) -> InboxPage:
    """A page of the user's conversations (or the one ``only``), newest activity first, each
    with its last message as a preview, unread counts and its first members.

    A fixed number of SQL statements whatever the number of conversations: the page, the last
    messages, the unread counts with their mentions, the channel fields (member counts and the
    user's role among them) and the first members."""
    limit = min(max(limit, 1), MAX_PAGE)
    activity = func.coalesce(Conversation.last_message_at, Conversation.created_at)
    query = (
        select(Conversation, Participant.last_read_message_id, Participant.muted,
               activity.label("activity"))
        .join(Participant, and_(Participant.conversation_id == Conversation.id,
                                Participant.user_id == user.id))
        .order_by(activity.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if only is not None:
        query = query.where(Conversation.id == only)
    if before is not None:
        query = query.where(or_(activity < before.at,
                                and_(activity == before.at,
                                     Conversation.id < before.conversation_id)))
    rows = db.session.execute(query).all()
    next_before = str(Cursor(rows[limit - 1].activity, rows[limit - 1][0].id)) \
        if len(rows) > limit else None
    rows = rows[:limit]
    if not rows:
        return InboxPage([], None)
    ids = [row[0].id for row in rows]
    lasts = _last_messages(ids)
    unread = unread_state(user.id, ids)
    fields = channel_fields(user.id, ids)
    rows = [row for row in rows if row[0].id in fields]  # none deleted in between
    members = first_members({cid: fields[cid]["member_count"] for cid in ids})
    peers = {row[0].id: next((m.user.id for m in members[row[0].id] if m.user.id != user.id),
                             None)
             for row in rows if not row[0].is_group}
    statuses = _peer_presence(sorted({p for p in peers.values() if p is not None}))
    cached = _cached_of(ids)
    summaries, activity_of = [], {}
    for conversation, marker, is_muted, at in rows:
        cid = conversation.id
        last, sender, files = lasts.get(cid, (None, None, (None, 0)))
        count, counted, mentions = unread.get(cid, NOTHING_UNREAD)
        summary = ConversationSummary(
            id=cid,
            title=display_title(conversation, user.id, [m.user for m in members[cid]],
                                fields[cid]["member_count"]),
            is_group=conversation.is_group,
            last_id=str(last.id) if last else None,
            last_text=last.text if last else None,
            last_sender_id=last.sender_id if last else None,
            last_at=last.created_at if last else None,
            last_sender_name=sender.full_name if sender else None,
            last_kind=last.kind if last else None,
            preview=preview_of(last.text, last.html, *files) if last else None,
            unread=count,
            counted_upto=max(counted or "", marker or ""),
            mentions=mentions,
            muted=bool(is_muted),
            peer_id=peers.get(cid),
            peer_online=statuses.get(peers.get(cid), {}).get("online", False),
            peer_last_seen=statuses.get(peers.get(cid), {}).get("last_seen"),
            visibility=fields[cid]["visibility"],
            description=fields[cid]["description"],
            archived=fields[cid]["archived"],
            role=fields[cid]["role"],
            member_count=fields[cid]["member_count"],
            members=members[cid],
        )
        activity_of[cid] = at
        if cached.get(cid):
            activity_of[cid] = max(at, _add_unstored(summary, cached[cid], user.id))
        summaries.append(summary)
    # A message not stored yet can make a conversation the newest of its page (a stable sort:
    # SQL's order holds among the others). The cursor stays SQL's: pages neither skip nor
    # repeat a conversation.
    summaries.sort(key=lambda s: activity_of[s.id], reverse=True)
    return InboxPage(summaries, next_before)


def preview_of(text: str | None, html: str | None, file_name: str | None = None,
               files: int = 0) -> str:
    """A message as the list shows it: its text as plain text, or, with files alone,
    "📎 plan.pdf" (and how many more)."""
    shown = plain_text(text or "", html, PREVIEW_LENGTH)
    if shown or not file_name:
        return shown
    return f"📎 {file_name}" + (f" +{files - 1}" if files > 1 else "")


def _last_messages(ids: list[int]
                   ) -> dict[int, tuple[Message, User | None, tuple[str | None, int]]]:
    """The newest message of each conversation's main flow that is not deleted, with its
    sender and its first file's name and number of files, in one statement: for each
    conversation, its newest id by the (conversation, time, id) index, then those rows."""
    newest = (
        select(Message.id).where(Message.conversation_id == Conversation.id,
                                 Message.deleted_at.is_(None),
                                 or_(Message.thread_id.is_(None),
                                     Message.also_to_conversation.is_(True)))
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(1)
        .correlate(Conversation).scalar_subquery()
    )
    lasts = (select(Conversation.id.label("cid"), newest.label("last_id"))
             .where(Conversation.id.in_(ids)).subquery())
    its_files = (Attachment.message_id == Message.id, Attachment.deleted_at.is_(None))
    first_file = (select(Attachment.name).where(*its_files)
                  .order_by(Attachment.created_at, Attachment.id).limit(1)
                  .correlate(Message).scalar_subquery())
    file_count = (select(func.count()).select_from(Attachment).where(*its_files)
                  .correlate(Message).scalar_subquery())
    rows = db.session.execute(
        select(Message, User, first_file, file_count)
        .join(lasts, Message.id == lasts.c.last_id)
        .outerjoin(User, User.id == Message.sender_id)
    ).all()
    return {message.conversation_id: (message, sender, (name, count or 0))
            for message, sender, name, count in rows}


def _cached_of(conversation_ids: list[int]) -> dict[int, list[dict]]:
    """The recent-message cache's lists of these conversations; none if it is unreachable
    (the list is SQL's alone then)."""
    try:
        return services().cache.recent_of(conversation_ids)
    except Exception:
        log.warning("recent-message cache unavailable for the conversation list", exc_info=True)
        return {}


def _add_unstored(summary: ConversationSummary, cached: list[dict], viewer_id: int) -> datetime:
    """Add to a summary what SQL's statements could not see yet: messages acknowledged and
    cached but still in the write buffer. Returns the time of the newest cached message.

    The unread count's statement counted every unread message stored at its moment, up to
    ``counted_upto`` (the newest counted, or the read marker): a cached unread message newer
    than that was not stored then, so it is counted here, once, and ``counted_upto`` moves past
    it, so that the page does not count it again when it arrives live. The newest cached
    message not deleted is the preview if SQL's last one is older (or was deleted since)."""
    newer = [m for m in cached if m["id"] > summary.counted_upto
             and m.get("sender") != viewer_id and m.get("kind") != SYSTEM_KIND
             and not m.get("deleted")]
    if newer:
        summary.unread += len(newer)
        summary.mentions += sum(viewer_id in (m.get("mentions") or []) for m in newer)
        summary.counted_upto = newer[-1]["id"]
    shown = [m for m in cached if not m.get("deleted")]
    deleted = {m["id"] for m in cached if m.get("deleted")}
    if summary.last_id in deleted:  # deleted while its deletion is on its way to SQL
        summary.last_id = summary.last_text = summary.preview = None
    if shown and (summary.last_id is None or shown[-1]["id"] > summary.last_id):
        newest = shown[-1]
        files = newest.get("attachments") or []
        summary.last_id, summary.last_text = newest["id"], newest.get("message")
        summary.last_sender_id, summary.last_kind = newest.get("sender"), newest.get("kind")
        summary.last_sender_name = newest.get("sender_name")
        summary.last_at = message_id_time(newest["id"])
        summary.preview = preview_of(newest.get("message"), newest.get("html"),
                                     files[0]["name"] if files else None, len(files))
    return message_id_time(cached[-1]["id"])
