"""Conversations: starting one (limited per user when a user asks), finding one a user takes
part in, its members and title, and muting it."""

from __future__ import annotations

import logging

from sqlalchemy import case, func, select, update

from simplechat.extensions import db
from simplechat.infra.membership import commit_members_change, membership_refusal
from simplechat.infra.services import services
from simplechat.models import (
    ADMIN,
    DIRECT,
    LEVEL_DEFAULT,
    LEVEL_NONE,
    MEMBER,
    OWNER,
    PRIVATE,
    Conversation,
    Participant,
    User,
)
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room

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
    group = len(others) > 1
    conversation = Conversation(
        title=(title or None) if group else None, is_group=group,
        visibility=PRIVATE if group else DIRECT, created_by_id=creator.id,
    )
    members = [creator, *others]
    conversation.participants = [
        Participant(user=u, role=OWNER if group and u is creator else MEMBER) for u in members]
    db.session.add(conversation)
    db.session.flush()  # its id, for the cache's keys
    commit_members_change([conversation.id], [u.id for u in members])
    return conversation


def channel_fields(viewer_id: int | None, conversation_ids: list[int]) -> dict[int, dict]:
    """What every conversation payload carries about the conversation itself, for many at
    once in one statement: ``visibility``, ``description``, ``archived``, ``member_count`` and
    the viewer's ``role`` (None for someone who takes no part in it, or no viewer)."""
    if not conversation_ids:
        return {}
    counts = (select(Participant.conversation_id, func.count().label("n"))
              .where(Participant.conversation_id.in_(conversation_ids))
              .group_by(Participant.conversation_id).subquery())
    mine = (select(Participant.conversation_id, Participant.role)
            .where(Participant.user_id == viewer_id,
                   Participant.conversation_id.in_(conversation_ids)).subquery())
    rows = db.session.execute(
        select(Conversation.id, Conversation.visibility, Conversation.description,
               Conversation.archived, func.coalesce(counts.c.n, 0), mine.c.role)
        .outerjoin(counts, counts.c.conversation_id == Conversation.id)
        .outerjoin(mine, mine.c.conversation_id == Conversation.id)
        .where(Conversation.id.in_(conversation_ids)))
    return {cid: {"visibility": visibility, "description": description or "",
                  "archived": bool(archived), "member_count": int(count), "role": role}
            for cid, visibility, description, archived, count, role in rows}


# The members a conversation payload lists: owners first, then admins, then by name.
LISTED_MEMBERS = 50
_ROLE_ORDER = case({OWNER: 0, ADMIN: 1}, value=Participant.role, else_=2)


def listed_members(conversation_id: int, limit: int = LISTED_MEMBERS
                   ) -> list[tuple[User, str]]:
    """Up to ``limit`` members with their roles: owners, admins, then the others by name."""
    return list(db.session.execute(
        select(User, Participant.role).join(Participant, Participant.user_id == User.id)
        .where(Participant.conversation_id == conversation_id)
        .order_by(_ROLE_ORDER, User.first_name, User.last_name, User.id)
        .limit(limit)
    ).tuples())


def participants_of(conversation_id: int) -> list[User]:
    return list(db.session.scalars(
        select(User).join(Participant, Participant.user_id == User.id)
        .where(Participant.conversation_id == conversation_id)
        .order_by(User.first_name, User.last_name, User.id)
    ))


# An untitled group names this many of its other members, then how many more there are.
NAMED_MEMBERS = 3


def display_title(conversation: Conversation, viewer_id: int, members: list[User],
                  member_count: int | None = None) -> str:
    """What the viewer sees a conversation called: its title; for a direct conversation the
    other person's full name; for an untitled group its other members' first names ("Bob,
    Cat", "Bob, Cat, Dan and 4 others"), or "Bob and you" when one is left, so a group is never
    named as a direct conversation is. ``members`` may be the first ones only (a big group's):
    ``member_count`` is then the real number."""
    if conversation.title:
        return conversation.title
    others = [u for u in members if u.id != viewer_id]
    if not conversation.is_group:
        return ", ".join(u.full_name for u in others) or "Just you"
    names = [u.first_name.strip() or u.username for u in others]
    if not names:
        return "Just you"
    if len(names) == 1:
        return f"{names[0]} and you"
    total = max(len(names), (member_count or 0) - 1)
    if total <= NAMED_MEMBERS:
        return ", ".join(names)
    more = total - NAMED_MEMBERS
    return ", ".join(names[:NAMED_MEMBERS]) + f" and {more} other{'s' if more > 1 else ''}"


def set_muted(user_id: int, conversation_id: int, muted: bool) -> bool:
    """Mute or unmute a conversation for one of its participants, and tell their other pages
    and devices (their personal room); False if they take no part in it."""
    changed = db.session.execute(
        update(Participant)
        .where(Participant.user_id == user_id, Participant.conversation_id == conversation_id)
        # Muting is level "none" for good; unmuting ends any mute and a level "none".
        .values(muted_until=None, notification_level=(
            LEVEL_NONE if muted else case((Participant.notification_level == LEVEL_NONE,
                                           LEVEL_DEFAULT),
                                          else_=Participant.notification_level))))
    db.session.commit()
    if not changed.rowcount:
        return False
    emit_to(user_room(user_id), "conversation_muted",
            {"conversation_id": conversation_id, "muted": muted})
    return True
