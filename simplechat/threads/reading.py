"""Reading a thread: its root and a page of its replies, from the thread's own recent list
while it covers the range, else from SQL (messaging.history with ``thread_id``)."""

from __future__ import annotations

from flask import current_app

from simplechat.answers import error
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import membership, valid_conversation_id
from simplechat.messaging.history import messages_after, messages_before, recent_messages
from simplechat.messaging.replies import find_message
from simplechat.models import User


def find_root(conversation_id: int, root_id: str) -> dict | None:
    """The current payload of a thread's root in this conversation (its summary included),
    wherever it is now; None when ``root_id`` names no message that can have a thread there
    (none, another conversation's, a thread reply, a system line). A deleted root keeps its
    thread."""
    root = find_message(conversation_id, root_id)
    if root is None or root.get("thread_id") or root.get("kind") == "system":
        return None
    return root


def thread_view(user: User, data: dict) -> dict:
    """The ``thread`` event: the root, the newest CHAT_RECENT_MESSAGES replies (oldest first;
    ``has_more``: older ones exist), or with ``after`` those newer than that reply (catching
    up). Participants only. Redis alone while the thread's list is cached, as ``join``: the
    caller's following and marker come with the followed threads (GET /api/threads)."""
    conversation_id = data.get("conversation_id")
    root_id = parse_message_id(data.get("thread_id"))
    after = data.get("after")
    if not valid_conversation_id(conversation_id) or root_id is None:
        return error("invalid")
    if after is not None:
        after = parse_message_id(after)
        if after is None:
            return error("invalid")
    if not membership().members_among(conversation_id, [user.id]):
        return error("forbidden")
    root = find_root(conversation_id, root_id)
    if root is None:
        return error("invalid")
    if after is None:
        messages, has_more, _source = recent_messages(conversation_id, thread_id=root_id)
    else:
        messages, has_more, _source = messages_after(conversation_id, after, thread_id=root_id)
    return {"ok": True, "root": root, "messages": messages, "has_more": has_more}


def thread_page(conversation_id: int, root_id: str, before: str | None, after: str | None,
                limit: int) -> dict | None:
    """A page of a thread's replies for the history API's way of paging (the caller checked
    that the reader may read the conversation): the newest page, ``before`` a reply the page
    older than it, ``after`` one the replies newer than it; None when there is no such root."""
    root = find_root(conversation_id, root_id)
    if root is None:
        return None
    limit = min(limit, current_app.config["CHAT_HISTORY_PAGE_MAX"])
    if after is not None:
        messages, has_more, _source = messages_after(conversation_id, after, thread_id=root_id)
        has_more = has_more or len(messages) > limit
        messages = messages[:limit]
    elif before is None:
        # The newest page: through the thread's list, re-warmed from SQL when it was lost, so
        # replies acknowledged and not yet stored are on it.
        messages, has_more, _source = recent_messages(conversation_id, thread_id=root_id)
        has_more = has_more or len(messages) > limit
        messages = messages[-limit:]
    else:
        messages, has_more, _source = messages_before(conversation_id, before, limit,
                                                      thread_id=root_id)
    return {"ok": True, "root": root, "messages": messages, "has_more": has_more}

