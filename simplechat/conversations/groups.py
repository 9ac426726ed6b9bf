"""Group and channel management: the state clients see, rename, add participants, leave (an
owner's leaving hands ownership on), and taking a user's sockets out of a room."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import delete, func, select

from simplechat.answers import error
from simplechat.conversations.records import channel_fields, conversation_of, listed_members
from simplechat.conversations.roles import ADD, RENAME, checked, owner_count
from simplechat.extensions import db, socketio
from simplechat.infra.membership import commit_members_change, participant_ids
from simplechat.messaging import system_lines
from simplechat.messaging.history import cached_messages
from simplechat.messaging.send import clean_text
from simplechat.models import ADMIN, OWNER, Conversation, Message, Participant, User
from simplechat.observability.activity import record_activity
from simplechat.realtime.emit import emit_to
from simplechat.realtime.presence import presence
from simplechat.realtime.rooms import NAMESPACE, room, user_room

log = logging.getLogger(__name__)
MAX_TITLE = 120


def conversation_state(conversation: Conversation, viewer_id: int | None = None) -> dict:
    """STATE: the conversation as a socket client sees it, with up to LISTED_MEMBERS members
    (owners and admins first) and the real ``member_count``. ``role`` is the viewer's; a state
    sent to a whole room (no viewer) leaves it out, as it differs per reader."""
    fields = channel_fields(viewer_id, [conversation.id])[conversation.id]
    if viewer_id is None:
        del fields["role"]
    return {
        "conversation_id": conversation.id,
        "title": conversation.title,
        "is_group": conversation.is_group,
        **fields,
        "participants": [{"id": u.id, "name": u.full_name, "username": u.username,
                          "role": role}
                         for u, role in listed_members(conversation.id)],
    }


def announce(conversation: Conversation, extra_user_ids: list[int] = (),
             everyone: bool = True) -> dict:
    """Tell the room and (``everyone``) every participant's personal room what the
    conversation is now (the STATE without ``role``); returns it."""
    state = conversation_state(conversation)
    rooms = [room(conversation.id)]
    if everyone:
        rooms += [user_room(uid) for uid in participant_ids(conversation.id)]
    rooms += [user_room(uid) for uid in extra_user_ids]
    emit_to(rooms, "conversation_updated", state)
    return state


def _group_of(user: User, data: dict) -> tuple[Conversation | None, dict | None]:
    conversation, refusal = conversation_of(user.id, data.get("conversation_id"))
    if refusal:
        return None, error(refusal)
    if not conversation.is_group:
        return None, error("not_group")
    return conversation, None


def rename_conversation(user: User, data: dict) -> dict:
    """Owners and admins rename a group or channel."""
    conversation, role, refusal = checked(user, data.get("conversation_id"), RENAME)
    if refusal:
        return error(refusal)
    title = data.get("title")
    if not isinstance(title, str):
        return error("invalid")
    title = clean_text(title)
    if len(title) > MAX_TITLE:
        return error("too_long", max_length=MAX_TITLE)
    if not title:
        return error("empty")
    conversation.title = title
    db.session.commit()
    record_activity("conversation_renamed", user.id,
                    {"conversation_id": conversation.id, "title": title})
    state = announce(conversation)
    system_lines.renamed(user, conversation.id, title)
    return {"ok": True, "conversation": {**state, "role": role}}


def max_members() -> int:
    return current_app.config["CHAT_MAX_MEMBERS"]


def add_participants(user: User, data: dict) -> dict:
    """Any member adds people to a group or channel, up to CHAT_MAX_MEMBERS in all."""
    conversation, role, refusal = checked(user, data.get("conversation_id"), ADD)
    if refusal:
        return error(refusal)
    wanted = data.get("user_ids")
    if (not isinstance(wanted, list) or not wanted
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63
                       for i in wanted)):
        return error("invalid")
    limit = max_members()
    if len(wanted) > limit:
        return error("too_many", max_participants=limit)
    present = set(db.session.scalars(select(Participant.user_id).where(
        Participant.conversation_id == conversation.id)))
    new_ids = [i for i in dict.fromkeys(wanted) if i not in present]
    users = list(db.session.scalars(
        select(User).where(User.id.in_(new_ids), User.is_active.is_(True)))) if new_ids else []
    if len(users) != len(new_ids):
        return error("not_found")
    if len(present) + len(users) > limit:
        return error("too_many", max_participants=limit)
    # What was said before someone joins (or while they were away, for someone added back) is
    # history to them, not unread: their read marker starts at the newest message.
    read_up_to = newest_message_id(conversation.id) if users else None
    for new_user in users:
        db.session.add(Participant(conversation_id=conversation.id, user_id=new_user.id,
                                   last_read_message_id=read_up_to))
    commit_members_change([conversation.id], [u.id for u in users])
    if users:
        record_activity("participants_added", user.id,
                        {"conversation_id": conversation.id, "user_ids": [u.id for u in users]})
    state = announce(conversation)
    if users:
        system_lines.added(user, conversation.id, users)
    return {"ok": True, "conversation": {**state, "role": role}}


def newest_message_id(conversation_id: int) -> str | None:
    """The id of the conversation's newest message: the recent list may be ahead of SQL (the
    write buffer), so both are asked."""
    cached = cached_messages(conversation_id)
    stored = db.session.scalar(select(func.max(Message.id))
                               .where(Message.conversation_id == conversation_id))
    return max((i for i in (cached[-1]["id"] if cached else None, stored) if i), default=None)


def leave_conversation(user: User, data: dict) -> dict:
    """Leave a group or channel (archived ones too): from now on no events and no history of
    it reach this user (a public channel's preview still shows its messages)."""
    conversation, refusal = _group_of(user, data)
    if refusal:
        return refusal
    db.session.execute(delete(Participant).where(
        Participant.conversation_id == conversation.id, Participant.user_id == user.id))
    commit_members_change([conversation.id], [user.id])
    # Done: what follows tells others, and a failure of it does not make the answer a lie.
    try:
        successor = keep_an_owner(conversation.id)
        remove_sockets_from_room(user.id, conversation.id)
        emit_to(user_room(user.id), "conversation_left", {"conversation_id": conversation.id})
        record_activity("conversation_left", user.id, {"conversation_id": conversation.id})
        announce(conversation)
        system_lines.left(user, conversation.id)
        if successor is not None:
            system_lines.role_changed(successor, conversation.id, successor, OWNER)
    except Exception:
        log.warning("user %s left conversation %s; not everyone was told", user.id,
                    conversation.id, exc_info=True)
    return {"ok": True}


def keep_an_owner(conversation_id: int) -> User | None:
    """After someone left or was removed: if no owner is left but members are, the earliest
    admin, else the earliest member, becomes owner. Returns that user (None if no change)."""
    if owner_count(conversation_id):
        return None
    heir = db.session.execute(
        select(Participant).where(Participant.conversation_id == conversation_id)
        .order_by((Participant.role != ADMIN), Participant.joined_at, Participant.id)
        .limit(1)).scalar_one_or_none()
    if heir is None:
        return None
    heir.role = OWNER
    db.session.commit()
    record_activity("role_changed", None, {"conversation_id": conversation_id,
                                           "user_id": heir.user_id, "role": OWNER,
                                           "why": "no owner left"})
    return db.session.get(User, heir.user_id)


def remove_sockets_from_room(user_id: int, conversation_id: int) -> None:
    """Take every socket of a user out of a conversation's room, on whichever process it is.

    The Socket.IO message queue carries a leave for a socket another process holds.
    """
    manager = socketio.server.manager
    target = room(conversation_id)
    local = {sid for sid, _ in manager.get_participants(NAMESPACE, user_room(user_id))}
    for sid in local | set(presence().sids(user_id)):
        try:
            manager.leave_room(sid, NAMESPACE, target)
        except Exception:
            log.warning("socket %s could not leave %s", sid, target, exc_info=True)
