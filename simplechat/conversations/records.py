"""Conversations: starting one (limited per user when a user asks), finding one a user takes
part in, its members and title, and muting it."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from simplechat.extensions import db
from simplechat.infra.membership import members_changed, membership_refusal
from simplechat.infra.services import services
from simplechat.models import Conversation, Participant, User
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room

# The most people a group holds; more are refused (the form, the API and add_participants).
MAX_PARTICIPANTS = 50
log = logging.getLogger(__name__)


def participant_conversation(user_id: int, conversation_id: object) -> Conversation | None:
    """The conversation if ``user_id`` takes part in it; None for anything else, even a bad id."""
    if membership_refusal(user_id, conversation_id):
        return None
    return db.session.get(Conversation, conversation_id)


def conversation_of(user_id: int, conversation_id: object
                    ) -> tuple[Conversation | None, str | None]:
    """The conversation if ``user_id`` takes part in it, else the refusal's error code
    (see membership_refusal)."""
    refusal = membership_refusal(user_id, conversation_id)
    if refusal:
        return None, refusal
    conversation = db.session.get(Conversation, conversation_id)
    return (conversation, None) if conversation is not None else (None, "forbidden")


def find_direct(user_a: int, user_b: int) -> Conversation | None:
    """The direct (two-person) conversation between two users, if there is one."""
    mine = select(Participant.conversation_id).where(Participant.user_id == user_a)
    theirs = select(Participant.conversation_id).where(Participant.user_id == user_b)
    return db.session.scalars(
        select(Conversation)
        .where(Conversation.is_group.is_(False))
        .where(Conversation.id.in_(mine), Conversation.id.in_(theirs))
        .order_by(Conversation.id)
        .limit(1)
    ).first()


def start_conversation(
    creator: User, others: list[User], title: str | None = None
) -> tuple[Conversation, bool]:
    """Reuse the direct conversation with one other user, or create a direct or group one.

    Returns the conversation and whether it was created. Not limited: for the command line and
    scripts; a user's own request goes through start_limited.
    """
    others = _others(creator, others)
    existing = _existing_direct(creator, others)
    if existing is not None:
        return existing, False
    return _create(creator, others, title), True


def start_limited(creator: User, others: list[User], title: str | None = None
                  ) -> tuple[Conversation | None, bool, float]:
    """start_conversation for a user's own request (the page, the API): reusing the direct
    conversation is free, a new one takes one of the creator's CHAT_CONVERSATION_RATE_LIMIT.
    Returns the conversation, whether it was created, and, when none is left, (None, False,
    the seconds to wait)."""
    others = _others(creator, others)
    existing = _existing_direct(creator, others)
    if existing is not None:
        return existing, False, 0.0
    wait = services().conversation_limiter.hit(f"conversation:{creator.id}")
    if wait:
        return None, False, wait
    return _create(creator, others, title), True, 0.0


def _others(creator: User, others: list[User]) -> list[User]:
    others = [u for u in {u.id: u for u in others}.values() if u.id != creator.id]
    if not others:
        raise ValueError("a conversation needs at least one other participant")
    return others


def _existing_direct(creator: User, others: list[User]) -> Conversation | None:
    return find_direct(creator.id, others[0].id) if len(others) == 1 else None


def _create(creator: User, others: list[User], title: str | None) -> Conversation:
    conversation = Conversation(
        title=(title or None) if len(others) > 1 else None, is_group=len(others) > 1
    )
    members = [creator, *others]
    conversation.participants = [Participant(user=u) for u in members]
    db.session.add(conversation)
    db.session.commit()
    members_changed([conversation.id], [u.id for u in members])
    return conversation


def participants_of(conversation_id: int) -> list[User]:
    return list(db.session.scalars(
        select(User).join(Participant, Participant.user_id == User.id)
        .where(Participant.conversation_id == conversation_id)
        .order_by(User.first_name, User.last_name, User.id)
    ))


def display_title(conversation: Conversation, viewer_id: int, members: list[User]) -> str:
    if conversation.title:
        return conversation.title
    names = [u.full_name for u in members if u.id != viewer_id]
    return ", ".join(names) or "Just you"


def set_muted(user_id: int, conversation_id: int, muted: bool) -> bool:
    """Mute or unmute a conversation for one of its participants, and tell their other pages
    and devices (their personal room); False if they take no part in it."""
    changed = db.session.execute(
        update(Participant)
        .where(Participant.user_id == user_id, Participant.conversation_id == conversation_id)
        .values(muted=muted))
    db.session.commit()
    if not changed.rowcount:
        return False
    emit_to(user_room(user_id), "conversation_muted",
            {"conversation_id": conversation_id, "muted": muted})
    return True
