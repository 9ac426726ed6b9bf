"""System lines: what happened to a group or channel (renamed, described, people added, joined,
removed or left, a role changed, archived), told in its timeline as a message of ``kind:
"system"`` on the send path (recent list, write buffer, SQL)."""

from __future__ import annotations

import html
import logging

from sqlalchemy import select

from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.messaging.payload import SYSTEM, message_payload
from simplechat.messaging.send import deliver
from simplechat.models import Participant, User

log = logging.getLogger(__name__)


def _members(conversation_id: int) -> list[int]:
    return list(db.session.scalars(
        select(Participant.user_id).where(Participant.conversation_id == conversation_id)))


def post_system_line(actor: User, conversation_id: int, text: str, system: dict,
                     also: list[int] = ()) -> dict:
    """Tell the conversation ``text`` (``system`` says what it is about, for clients); the
    actor's rate limit is not spent. ``also``: users to reach who are no longer members."""
    members = list(dict.fromkeys([*_members(conversation_id), *also]))
    payload = message_payload(new_message_id(), conversation_id, None, text,
                              sender_id=actor.id, sender_name=actor.full_name,
                              html=f"<p>{html.escape(text, quote=False)}</p>", kind=SYSTEM,
                              system=system)
    ack = deliver(payload, members=members, limited=False)
    if not ack["ok"]:
        log.warning("system line in conversation %s not posted: %s", conversation_id,
                    ack.get("error"))
    return ack


def renamed(actor: User, conversation_id: int, title: str) -> dict:
    return post_system_line(actor, conversation_id,
                            f"{actor.full_name} renamed the group to \u201c{title}\u201d",
                            {"event": "renamed", "title": title})


def added(actor: User, conversation_id: int, users: list[User]) -> dict:
    names = ", ".join(u.full_name for u in users)
    return post_system_line(actor, conversation_id, f"{actor.full_name} added {names}",
                            {"event": "added", "user_ids": [u.id for u in users]})


def left(actor: User, conversation_id: int) -> dict:
    return post_system_line(actor, conversation_id, f"{actor.full_name} left the group",
                            {"event": "left", "user_id": actor.id}, also=[actor.id])


def joined(actor: User, conversation_id: int) -> dict:
    return post_system_line(actor, conversation_id, f"{actor.full_name} joined the channel",
                            {"event": "joined", "user_id": actor.id})


def removed(actor: User, conversation_id: int, target: User) -> dict:
    return post_system_line(actor, conversation_id,
                            f"{actor.full_name} removed {target.full_name}",
                            {"event": "removed", "user_id": target.id})


ROLE_NAMES = {"owner": "an owner", "admin": "an admin", "member": "a member"}


def role_changed(actor: User, conversation_id: int, target: User, role: str) -> dict:
    text = (f"{target.full_name} is now {ROLE_NAMES[role]}" if actor.id == target.id
            else f"{actor.full_name} made {target.full_name} {ROLE_NAMES[role]}")
    return post_system_line(actor, conversation_id, text,
                            {"event": "role_changed", "user_id": target.id, "role": role})


def described(actor: User, conversation_id: int, description: str) -> dict:
    text = (f"{actor.full_name} changed the description" if description
            else f"{actor.full_name} removed the description")
    return post_system_line(actor, conversation_id, text,
                            {"event": "described", "description": description})


def archived(actor: User, conversation_id: int, archived: bool) -> dict:
    text = (f"{actor.full_name} archived the conversation" if archived
            else f"{actor.full_name} unarchived the conversation")
    return post_system_line(actor, conversation_id, text,
                            {"event": "archived" if archived else "unarchived"})
