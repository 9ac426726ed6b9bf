"""Editing and deleting one's own messages: the same rules as sending, within a time window;
and deleting someone else's, for a conversation's owners and admins (the caller decides who
may: conversations.roles) and for site admins anywhere. Nothing changes in an archived
conversation, but a site admin may still delete. An edit keeps the text it replaces
(``message_edits``, for site admins).

As for a send, the cheap checks come first: the ids, membership, the message's owner and age,
the text, and the change limit (taken) before an edit's mentions are resolved and its Markdown
is rendered on the CPU pool."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app

from simplechat.answers import TIMESTAMP_FORMAT, error
from simplechat.extensions import end_transaction
from simplechat.infra.cache import lists_of
from simplechat.infra.ids import message_id_time, parse_message_id
from simplechat.infra.membership import membership, valid_conversation_id, write_refusal
from simplechat.infra.offload import Busy, offload
from simplechat.infra.services import services
from simplechat.messaging.formatting import plain_html, render_html
from simplechat.messaging.mentions import resolve_mentions
from simplechat.messaging.payload import SYSTEM, tombstone
from simplechat.messaging.replies import find_message
from simplechat.messaging.send import checked_text, tell_mentioned
from simplechat.models import User
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import room

log = logging.getLogger(__name__)


def _current_version(conversation_id: int, message_id: str) -> dict | None:
    """The message as clients see it now: the cached payload (the main list's, or its
    thread's), else the stored row, else the one waiting in the write buffer."""
    return find_message(conversation_id, message_id)


def _changeable(user: User, data: dict, may_moderate: Callable[[int], str | None] | None = None,
                site_admin: Callable[[], bool] | None = None
                ) -> tuple[dict | None, dict | None]:
    """The message ``data`` names if ``user`` may change it now, else an error ack.

    ``may_moderate(conversation_id)``, asked only for someone else's message, answers None
    when the user may delete it (no time window then), else the refusal's code.
    ``site_admin()``, asked only when a rule would refuse, lets a site admin delete anyway:
    not a member, an archived conversation, someone else's message, past the window."""
    conversation_id = data.get("conversation_id")
    message_id = parse_message_id(data.get("message_id"))
    if message_id is None or not valid_conversation_id(conversation_id):
        return None, error("invalid")
    refusal = write_refusal(user.id, conversation_id)
    if refusal and not (site_admin and site_admin()):
        return None, error(refusal)
    current = _current_version(conversation_id, message_id)
    if current is None or current.get("deleted"):
        return None, error("not_found")
    if current.get("kind") == SYSTEM:
        return None, error("forbidden")
    if refusal:  # a site admin's deletion
        return current, None
    if current["sender"] != user.id:
        refusal = may_moderate(conversation_id) if may_moderate else "forbidden"
        if refusal and site_admin and site_admin():
            return current, None
        return (None, error(refusal)) if refusal else (current, None)
    age = (_now() - message_id_time(message_id)).total_seconds()
    if age > current_app.config["CHAT_EDIT_WINDOW"] and not (site_admin and site_admin()):
        return None, error("edit_window_closed")
    return current, None


def edit_message(user: User, data: dict) -> dict:
    """Replace the text of one's own message; every client, the cache and SQL see the change."""
    current, refusal = _changeable(user, data)
    if refusal:
        return refusal
    text, refusal = checked_text(data.get("message"), allow_empty=bool(current.get("attachments")))
    if refusal:
        return refusal
    refusal = _take_change(user)
    if refusal:
        return refusal
    conversation_id = current["conversation_id"]
    # The text is rendered again and its mentions resolved again; newly mentioned users are told.
    try:
        mentions, names = resolve_mentions(text, conversation_id, user.id,
                                           lambda: membership().members(conversation_id))
        html = plain_html(text)
        if html is None:
            end_transaction()  # no database connection held while the text waits for the pool
            html = offload(render_html, text, names)
    except Busy:
        return error("unavailable")
    changed_at = _now()
    payload = {**current, "message": text, "html": html,
               "mentions": mentions, "edited_at": changed_at.strftime(TIMESTAMP_FORMAT)}
    ack = _apply(user, payload, changed_at, previous=current.get("message"))
    before = set(current.get("mentions") or [])
    if ack["ok"] and (added := [uid for uid in mentions if uid not in before]):
        tell_mentioned(payload, added, user.id)
    return ack


def delete_message(user: User, data: dict,
                   may_moderate: Callable[[int], str | None] | None = None,
                   site_admin: Callable[[], bool] | None = None) -> dict:
    """Turn a message into a tombstone everywhere, its ``deleted_by`` the user: one's own
    (within the window), or, when ``may_moderate`` or ``site_admin`` allows it, anyone's."""
    current, refusal = _changeable(user, data, may_moderate, site_admin)
    if refusal:
        return refusal
    return _take_change(user) or _apply(user, tombstone(current, user.id), _now())


def _take_change(user: User) -> dict | None:
    """Take one change from the user's limit: None if allowed, else the refusal.

    Changes have a bucket of their own: a send does not use up the delete that follows it,
    and an edit does not refuse the delete a moment later; a script still cannot change
    messages faster than it can send them. Taken before an edit is rendered, so a flood of
    edits past the limit costs no rendering."""
    try:
        wait = services().change_limiter.hit(f"change:{user.id}")
    except Exception:
        log.warning("change by user %s refused: rate limiter unavailable", user.id,
                    exc_info=True)
        return error("unavailable")
    return error("rate_limited", retry_after=round(wait, 3)) if wait else None


def _apply(user: User, payload: dict, changed_at, previous: str | None = None) -> dict:
    from simplechat.messaging.tasks import store_message_change

    svc = services()
    try:
        # The earlier text rides along only with an edit (a task queued by an older version
        # has two arguments: the history then misses that edit).
        args = [payload, changed_at.isoformat()] + ([previous] if previous is not None else [])
        store_message_change.apply_async(args=args)
        for list_id in lists_of(payload):
            # Compare-and-set, keeping the thread summary a reply may have changed meanwhile.
            svc.cache.update(list_id, payload["id"],
                             lambda cached: {**payload, "thread": cached.get("thread")})
    except Exception:
        log.warning("change of message %s refused: storage unavailable", payload["id"],
                    exc_info=True)
        return error("unavailable")
    try:
        emit_to(room(payload["conversation_id"]), "message_updated", payload)
    except Exception:
        log.exception("fan-out of the change to message %s failed", payload["id"])
    return {"ok": True, "message": payload}


def _now():
    from simplechat.models import utcnow

    return utcnow()
