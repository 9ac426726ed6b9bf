"""Who may do what in a group or channel: the one check every transport goes through (socket
events, the JSON API, the command line).

Owners and admins rename, describe, remove members, archive and delete others' messages;
owners set roles; any member adds people. A stranger is refused ``forbidden``, a member lacking
the role ``not_allowed``, a direct conversation ``not_group``, and any change but unarchiving
an archived conversation ``archived``.
"""

from __future__ import annotations

from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.infra.membership import valid_conversation_id
from simplechat.models import ADMIN, MEMBER, OWNER, ROLES, Conversation, Participant, User

MODERATORS = frozenset({OWNER, ADMIN})
EVERYONE = frozenset(ROLES)

# Each action and the roles allowed to do it.
RENAME, DESCRIBE, REMOVE, ARCHIVE, DELETE_OTHERS, SET_ROLE, ADD = (
    "rename", "describe", "remove", "archive", "delete_others", "set_role", "add")
ALLOWED = {RENAME: MODERATORS, DESCRIBE: MODERATORS, REMOVE: MODERATORS,
           ARCHIVE: MODERATORS, DELETE_OTHERS: MODERATORS, SET_ROLE: frozenset({OWNER}),
           ADD: EVERYONE}
# What an archived conversation still allows (it is read-only otherwise).
WHILE_ARCHIVED = frozenset({ARCHIVE})

# An operator at the command line: every role's rights, the other rules still hold.
OPERATOR = object()


def role_of(user_id: int, conversation_id: int) -> str | None:
    """The user's role in the conversation; None if they take no part in it."""
    return db.session.scalar(select(Participant.role).where(
        Participant.user_id == user_id, Participant.conversation_id == conversation_id))


def may(role: str | None, action: str) -> bool:
    return role in ALLOWED[action]


def checked(actor: object, conversation_id: object, action: str
            ) -> tuple[Conversation | None, str | None, str | None]:
    """The conversation and the actor's role if the actor (a user, or OPERATOR) may do
    ``action`` there now; else (None, None, the refusal's code): ``invalid``, ``forbidden``,
    ``not_group``, ``not_allowed`` or ``archived``, in that order. One statement."""
    if not valid_conversation_id(conversation_id):
        return None, None, "invalid"
    if actor is OPERATOR:
        conversation, role = db.session.get(Conversation, conversation_id), OWNER
    else:
        row = db.session.execute(
            select(Conversation, Participant.role)
            .join(Participant, Participant.conversation_id == Conversation.id)
            .where(Conversation.id == conversation_id, Participant.user_id == actor.id)
        ).first()
        conversation, role = row if row is not None else (None, None)
    if conversation is None:
        return None, None, "forbidden"
    if not conversation.is_group:
        return None, None, "not_group"
    if not may(role, action):
        return None, None, "not_allowed"
    if conversation.archived and action not in WHILE_ARCHIVED:
        return None, None, "archived"
    return conversation, role, None


def moderation_refusal(user_id: int, conversation_id: int) -> str | None:
    """None if the user may delete others' messages in the conversation, else the refusal
    (asked only when a message is someone else's; in a direct conversation, ``forbidden``)."""
    row = db.session.execute(
        select(Participant.role, Conversation.is_group)
        .join(Conversation, Conversation.id == Participant.conversation_id)
        .where(Participant.user_id == user_id, Participant.conversation_id == conversation_id)
    ).first()
    if row is None or not row[1]:
        return "forbidden"
    return None if may(row[0], DELETE_OTHERS) else "not_allowed"


def may_remove(actor_role: str, target_role: str) -> bool:
    """Owners remove anyone; admins remove members only."""
    return actor_role == OWNER or (actor_role == ADMIN and target_role == MEMBER)


def owner_count(conversation_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(Participant).where(
        Participant.conversation_id == conversation_id, Participant.role == OWNER)) or 0


def is_site_admin(user_id: int) -> bool:
    """Whether the user is an active site admin (``User.is_admin``), as SQL says now."""
    return bool(db.session.scalar(select(User.id).where(
        User.id == user_id, User.is_admin.is_(True), User.is_active.is_(True))))


def earliest_owner(conversation_id: int) -> User | None:
    """The owner who has been one longest: whom an operator's system lines name."""
    return db.session.scalar(
        select(User).join(Participant, Participant.user_id == User.id)
        .where(Participant.conversation_id == conversation_id, Participant.role == OWNER)
        .order_by(Participant.joined_at, Participant.id).limit(1))
