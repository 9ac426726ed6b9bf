"""Reactions: one emoji from one user on one message, at most once; kept in the message's
cached payload for the room and history, and in SQL (the ``reactions`` table) for good."""

from __future__ import annotations

import logging

import emoji as emoji_lib

from simplechat.answers import error
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import write_refusal
from simplechat.infra.services import services
from simplechat.messaging.replies import find_message
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import room

log = logging.getLogger(__name__)

MAX_EMOJI_LENGTH = 16
MAX_DISTINCT = 20  # different emoji on one message
# The picker's emoji; any other single emoji (one grapheme, skin tones and ZWJ sequences
# included) is accepted as well.
COMMON = ("👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀")


def valid_emoji(value: object) -> str | None:
    """``value`` if it is one emoji of at most 16 characters, else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_EMOJI_LENGTH:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return None
    return value if value in COMMON or emoji_lib.is_emoji(value) else None


class _Refused(Exception):
    def __init__(self, code: str):
        self.code = code


def _toggled(current: dict, user_id: int, emoji: str, on: bool) -> dict | None:
    """``current`` with the reaction set or removed; None when nothing changes."""
    if current.get("deleted"):
        raise _Refused("not_found")
    reactions = {k: list(v) for k, v in (current.get("reactions") or {}).items()}
    users = reactions.get(emoji, [])
    if on == (user_id in users):
        return None
    if on:
        if emoji not in reactions and len(reactions) >= MAX_DISTINCT:
            raise _Refused("too_many")
        reactions[emoji] = [*users, user_id]
    else:
        users = [u for u in users if u != user_id]
        if users:
            reactions[emoji] = users
        else:
            del reactions[emoji]
    return {**current, "reactions": reactions}


def react(user, data: dict) -> dict:
    """Set (``on``) or take back one's emoji on a message; the room gets ``message_updated``.

    A message still on its way to SQL works like any other: the task that stores the reaction
    stores the message first (it is in the recent list or the write buffer until then)."""
    from simplechat.messaging.tasks import store_reaction

    conversation_id = data.get("conversation_id")
    message_id = parse_message_id(data.get("message_id"))
    emoji, on = valid_emoji(data.get("emoji")), data.get("on", True)
    refusal = write_refusal(user.id, conversation_id)
    if refusal == "invalid" or message_id is None or emoji is None or not isinstance(on, bool):
        return error("invalid")
    if refusal:
        return error(refusal)
    changed = {"payload": None}

    def change(current: dict) -> dict | None:
        new = _toggled(current, user.id, emoji, on)
        changed["payload"] = new if new is not None else current
        return new

    svc = services()
    try:
        # A bucket of its own (CHAT_REACT_RATE_LIMIT): each reaction is a cache write, a task
        # and a fan-out, and a script toggling one emoji must not flood the room.
        wait = svc.react_limiter.hit(f"react:{user.id}")
        if wait:
            return error("rate_limited", retry_after=round(wait, 3))
        updated = svc.cache.update(conversation_id, message_id, change)
        current = changed["payload"]
        if current is None:  # not in the recent list: a thread's, SQL, or the write buffer
            found = find_message(conversation_id, message_id)
            if found is None:
                return error("not_found")
            if found.get("thread_id"):
                updated = svc.cache.update((conversation_id, found["thread_id"]), message_id,
                                           change)
                current = changed["payload"]
            if current is None:
                updated = _toggled(found, user.id, emoji, on)
                current = updated or found
        if updated is None:
            return {"ok": True, "message": current}  # already so: nothing to store or tell
        if updated.get("thread_id") and updated.get("also_to_conversation"):
            # In both lists: the thread's copy gets the same reactions.
            svc.cache.update((conversation_id, updated["thread_id"]), message_id,
                             lambda cached: {**cached, "reactions": updated["reactions"]})
        store_reaction.apply_async(args=[updated, user.id, emoji, on])
    except _Refused as refused:
        return error(refused.code, **({"max_distinct": MAX_DISTINCT}
                                      if refused.code == "too_many" else {}))
    except Exception:
        log.warning("reaction to %s refused: storage unavailable", message_id, exc_info=True)
        return error("unavailable")
    try:
        emit_to(room(conversation_id), "message_updated", updated)
    except Exception:
        log.exception("fan-out of the reaction to message %s failed", message_id)
    return {"ok": True, "message": updated}


