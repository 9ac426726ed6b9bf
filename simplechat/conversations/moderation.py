"""What owners and admins do to a group or channel: remove a member, set a role, describe it,
archive it, delete others' messages. Each takes the actor and the event's payload (any shape)
and returns the answer, for the socket, the JSON API and the command line alike; the rules
are conversations.roles'."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select, update

from simplechat.answers import error
from simplechat.conversations.groups import (
    announce,
    conversation_state,
    keep_an_owner,
    remove_sockets_from_room,
)
from simplechat.conversations.roles import (
    ARCHIVE,
    DESCRIBE,
    OPERATOR,
    REMOVE,
    SET_ROLE,
    checked,
    is_site_admin,
    may_remove,
    moderation_refusal,
    owner_count,
    role_of,
)
from simplechat.extensions import db
from simplechat.infra.membership import commit_members_change, valid_conversation_id
from simplechat.messaging import edits, system_lines
from simplechat.messaging.send import clean_text
from simplechat.models import (
    ADMIN,
    MAX_DESCRIPTION,
    OWNER,
    ROLES,
    Conversation,
    Participant,
    User,
)
from simplechat.observability.activity import record_activity
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room

log = logging.getLogger(__name__)

valid_user_id = valid_conversation_id  # the same rule: a positive 64-bit integer


def _answer(state: dict, role: str | None) -> dict:
    return {"ok": True, "conversation": {**state, "role": role}}


def _target(user: User, data: dict, action: str, operator: bool
            ) -> tuple[Conversation | None, str | None, int | None, dict | None]:
    """The conversation, the actor's role and the target user's id for an action on a member,
    or the refusal."""
    conversation_id, target_id = data.get("conversation_id"), data.get("user_id")
    if not valid_conversation_id(conversation_id) or not valid_user_id(target_id):
        return None, None, None, error("invalid")
    conversation, role, refusal = checked(OPERATOR if operator else user, conversation_id,
                                          action)
    if refusal:
        return None, None, None, error(refusal)
    return conversation, role, target_id, None


def remove_participant(user: User, data: dict, *, operator: bool = False) -> dict:
    """Take a member out: owners remove anyone but themselves (``not_allowed``: they leave),
    admins remove members. The member's sockets leave the room on every process at once and
    they hear ``conversation_left`` (with ``removed_by``)."""
    conversation, role, target_id, refusal = _target(user, data, REMOVE, operator)
    if refusal:
        return refusal
    if target_id == user.id and not operator:
        return error("not_allowed")  # leave_conversation is how one goes
    target_role = role_of(target_id, conversation.id)
    if target_role is None:
        return error("not_found")
    if not may_remove(role, target_role):
        return error("not_allowed")
    target = db.session.get(User, target_id)
    db.session.execute(delete(Participant).where(
        Participant.conversation_id == conversation.id, Participant.user_id == target_id))
    commit_members_change([conversation.id], [target_id])
    # Done: what follows tells others, and a failure of it does not make the answer a lie.
    state = None
    try:
        remove_sockets_from_room(target_id, conversation.id)
        emit_to(user_room(target_id), "conversation_left",
                {"conversation_id": conversation.id, "removed_by": user.id})
        successor = keep_an_owner(conversation.id)
        record_activity("participant_removed", user.id,
                        {"conversation_id": conversation.id, "user_id": target_id})
        state = announce(conversation)
        system_lines.removed(user, conversation.id, target)
        if successor is not None:
            system_lines.role_changed(successor, conversation.id, successor, OWNER)
    except Exception:
        log.warning("user %s removed from conversation %s; not everyone was told", target_id,
                    conversation.id, exc_info=True)
    if state is None:
        state = conversation_state(conversation)
    return _answer(state, role_of(user.id, conversation.id) if operator else role)


def set_role(user: User, data: dict, *, operator: bool = False) -> dict:
    """An owner makes a member an owner, an admin or a member; the last owner cannot stop
    being one (``not_allowed``: make someone else owner first)."""
    new_role = data.get("role")
    if not isinstance(new_role, str) or new_role not in ROLES:
        return error("invalid")
    conversation, role, target_id, refusal = _target(user, data, SET_ROLE, operator)
    if refusal:
        return refusal
    target_role = role_of(target_id, conversation.id)
    if target_role is None:
        return error("not_found")
    if target_role == new_role:
        return _answer(conversation_state(conversation), role_of(user.id, conversation.id))
    if target_role == OWNER and owner_count(conversation.id) == 1:
        return error("not_allowed")
    db.session.execute(update(Participant).where(
        Participant.conversation_id == conversation.id, Participant.user_id == target_id)
        .values(role=new_role))
    db.session.commit()
    record_activity("role_changed", user.id, {"conversation_id": conversation.id,
                                              "user_id": target_id, "role": new_role})
    state = announce(conversation)
    # The one whose role changed learns it on every page and device.
    emit_to(user_room(target_id), "conversation_updated", {**state, "role": new_role})
    target = db.session.get(User, target_id)
    system_lines.role_changed(user, conversation.id, target, new_role)
    return _answer(state, role_of(user.id, conversation.id))


def describe_conversation(user: User, data: dict, *, operator: bool = False) -> dict:
    """Owners and admins set the description: plain text, at most 500 characters after
    trimming, empty to remove it."""
    description = data.get("description")
    if not isinstance(description, str):
        return error("invalid")
    try:
        description.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be stored
        return error("invalid")
    conversation, role, refusal = checked(OPERATOR if operator else user,
                                          data.get("conversation_id"), DESCRIBE)
    if refusal:
        return error(refusal)
    description = clean_text(description)
    if len(description) > MAX_DESCRIPTION:
        return error("too_long", max_length=MAX_DESCRIPTION)
    if description == conversation.description:
        return _answer(conversation_state(conversation), role)
    conversation.description = description
    db.session.commit()
    record_activity("conversation_described", user.id,
                    {"conversation_id": conversation.id, "description": description})
    state = announce(conversation)
    system_lines.described(user, conversation.id, description)
    return _answer(state, role)


def archive_conversation(user: User, data: dict, *, operator: bool = False,
                         recorded_by: User | None = None) -> dict:
    """Owners and admins archive a group or channel (read-only: sends answer ``archived``,
    nothing is added, renamed or changed) or unarchive it. ``recorded_by``: the site admin
    the activity row names, when ``user`` (whom the system line names) acts for them."""
    archived = data.get("archived")
    if not isinstance(archived, bool):
        return error("invalid")
    conversation, role, refusal = checked(OPERATOR if operator else user,
                                          data.get("conversation_id"), ARCHIVE)
    if refusal:
        return error(refusal)
    if conversation.archived == archived:
        return _answer(conversation_state(conversation), role)
    conversation.archived = archived
    # The send path reads "archived" with the cached members: they are dropped with the commit.
    commit_members_change([conversation.id], [])
    record_activity("conversation_archived" if archived else "conversation_unarchived",
                    (recorded_by or user).id,
                    {"conversation_id": conversation.id,
                     **({"by": "admin"} if recorded_by is not None else {})})
    state = announce(conversation)
    system_lines.archived(user, conversation.id, archived)
    return _answer(state, role)


def transfer_ownership(new_owner: User, conversation_id: int, actor: User | None = None
                       ) -> dict:
    """Make a member the owner of a group or channel; its other owners become admins (as an
    operator: ``flask channels set-owner`` and the admin console, ``actor`` the admin, who is
    recorded). The answer is set_role's: ``not_found`` for someone not a member."""
    answer = set_role(new_owner, {"conversation_id": conversation_id,
                                  "user_id": new_owner.id, "role": OWNER}, operator=True)
    if not answer["ok"]:
        return answer
    others = list(db.session.scalars(select(Participant.user_id).where(
        Participant.conversation_id == conversation_id, Participant.role == OWNER,
        Participant.user_id != new_owner.id)))
    for user_id in others:
        answer = set_role(new_owner, {"conversation_id": conversation_id, "user_id": user_id,
                                      "role": ADMIN}, operator=True)
        if not answer["ok"]:
            return answer
    record_activity("ownership_transferred", actor.id if actor is not None else new_owner.id,
                    {"conversation_id": conversation_id, "user_id": new_owner.id,
                     "former_owners": others, "by": "admin" if actor is not None else "cli"})
    return {**answer, "former_owners": others}


def delete_message(user: User, data: dict) -> dict:
    """Delete a message: one's own within the edit window, anyone's for an owner or admin of
    a group or channel, and any message anywhere for a site admin (the tombstone's
    ``deleted_by`` says who)."""
    answer = edits.delete_message(
        user, data, lambda conversation_id: moderation_refusal(user.id, conversation_id),
        site_admin=lambda: is_site_admin(user.id))
    if answer.get("ok") and answer["message"]["sender"] != user.id:
        record_activity("message_deleted_by_moderator", user.id,
                        {"conversation_id": answer["message"]["conversation_id"],
                         "message_id": answer["message"]["id"],
                         "sender": answer["message"]["sender"]})
    return answer
