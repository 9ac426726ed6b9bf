"""The conversation list (the inbox): each conversation with its last message, unread count,
mentions, muting and the direct peer's presence."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from simplechat.conversations.records import display_title
from simplechat.extensions import db
from simplechat.infra.ids import message_id_time
from simplechat.infra.services import services
from simplechat.messaging.payload import SYSTEM as SYSTEM_KIND
from simplechat.messaging.read_state import unread_mentions, unread_state
from simplechat.models import Conversation, Message, Participant, User
from simplechat.realtime.presence import presence

log = logging.getLogger(__name__)


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
    unread: int = 0
    mentions: int = 0  # unread messages that mention the user
    # The newest message that ``unread`` accounts for (counted, or read): the page counts
    # only messages newer than this one (see read_state.unread_state).
    counted_upto: str = ""
    muted: bool = False  # by the user: no notifications, not in the title-bar count
    peer_id: int | None = None  # the other person of a direct conversation
    peer_online: bool = False
    peer_last_seen: str | None = None


def _peer_presence(user_ids: list[int]) -> dict[int, dict]:
    """Presence of the list's direct peers in one round trip; a nicety, so never an error."""
    try:
        return presence().status(user_ids) if user_ids else {}
    except Exception:
        log.warning("presence unavailable for the conversation list", exc_info=True)
        return {}


def conversations_for(user: User) -> list[ConversationSummary]:
    """The user's conversations, newest activity first, with the last message as a preview."""
    conversations = list(db.session.scalars(
        select(Conversation)
        .join(Participant, Participant.conversation_id == Conversation.id)
        .where(Participant.user_id == user.id)
        .order_by(func.coalesce(Conversation.last_message_at, Conversation.created_at).desc(),
                  Conversation.id.desc())
    ))
    if not conversations:
        return []
    ids = [c.id for c in conversations]
    members: dict[int, list[User]] = {cid: [] for cid in ids}
    for cid, member in db.session.execute(
        select(Participant.conversation_id, User)
        .join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id.in_(ids))
    ):
        members[cid].append(member)
    unread = unread_state(user.id)
    mentioned = unread_mentions(user.id)
    markers, muted = {}, set()  # the user's own read marker and muting of each
    for cid, marker, is_muted in db.session.execute(
        select(Participant.conversation_id, Participant.last_read_message_id, Participant.muted)
        .where(Participant.user_id == user.id)
    ):
        markers[cid] = marker
        if is_muted:
            muted.add(cid)
    peers = {c.id: next((m.id for m in members[c.id] if m.id != user.id), None)
             for c in conversations if not c.is_group}
    statuses = _peer_presence(sorted({p for p in peers.values() if p is not None}))
    lasts = {c.id: db.session.scalars(
        select(Message).where(Message.conversation_id == c.id)
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(1)
    ).first() for c in conversations}
    names = {m.id: m.full_name for ms in members.values() for m in ms}
    gone = {m.sender_id for m in lasts.values() if m is not None} - names.keys()
    if gone:  # a former participant's message keeps its sender's name
        names.update((u.id, u.full_name)
                     for u in db.session.scalars(select(User).where(User.id.in_(gone))))
    cached = _cached_of(ids)
    summaries, activity = [], {}
    for conversation in conversations:
        cid = conversation.id
        last = lasts[cid]
        count, counted = unread.get(cid, (0, ""))
        summary = ConversationSummary(
            id=cid,
            title=display_title(conversation, user.id, members[cid]),
            is_group=conversation.is_group,
            last_id=str(last.id) if last else None,
            last_text=last.text if last else None,
            last_sender_id=last.sender_id if last else None,
            last_at=last.created_at if last else None,
            last_sender_name=names.get(last.sender_id) if last else None,
            last_kind=last.kind if last else None,
            unread=count,
            counted_upto=max(counted or "", markers.get(cid) or ""),
            mentions=mentioned.get(cid, 0),
            muted=cid in muted,
            peer_id=peers.get(cid),
            peer_online=statuses.get(peers.get(cid), {}).get("online", False),
            peer_last_seen=statuses.get(peers.get(cid), {}).get("last_seen"),
        )
        activity[cid] = conversation.last_message_at or conversation.created_at
        if cached.get(cid):
            activity[cid] = max(activity[cid], _add_unstored(summary, cached[cid], user.id))
        summaries.append(summary)
    # A message not stored yet can make a conversation the newest (a stable sort: SQL's order
    # holds among the others).
    summaries.sort(key=lambda s: activity[s.id], reverse=True)
    return summaries


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
    message is the preview if SQL's last one is older."""
    newer = [m for m in cached if m["id"] > summary.counted_upto
             and m.get("sender") != viewer_id and m.get("kind") != SYSTEM_KIND
             and not m.get("deleted")]
    if newer:
        summary.unread += len(newer)
        summary.mentions += sum(viewer_id in (m.get("mentions") or []) for m in newer)
        summary.counted_upto = newer[-1]["id"]
    newest = cached[-1]
    if summary.last_id is None or newest["id"] > summary.last_id:
        summary.last_id, summary.last_text = newest["id"], newest.get("message")
        summary.last_sender_id, summary.last_kind = newest.get("sender"), newest.get("kind")
        summary.last_sender_name = newest.get("sender_name")
        summary.last_at = message_id_time(newest["id"])
    return message_id_time(newest["id"])
