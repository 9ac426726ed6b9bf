"""The JSON API of threads, unread markers and drafts: a thread's replies, the followed
threads, following, the read markers, and the composer's drafts. Each route parses, calls the
feature's function (the socket events' own) and answers."""

from __future__ import annotations

from flask import jsonify
from flask_login import current_user

from simplechat.api.schemas import (
    DraftChange,
    DraftList,
    DraftSaved,
    FollowChange,
    Following,
    HistoryQuery,
    MessageMarker,
    ThreadList,
    ThreadMarker,
    ThreadPage,
    ThreadQuery,
    Unmarked,
)
from simplechat.api.spec import operation
from simplechat.api.views import send_answer
from simplechat.conversations.channels import readable_conversation
from simplechat.conversations.drafts import drafts_of, save_draft
from simplechat.infra.ids import parse_message_id
from simplechat.messaging.read_state import mark_unread
from simplechat.threads.following import (
    follow_thread,
    followed_threads,
    parse_thread_cursor,
    thread_read,
)
from simplechat.threads.reading import thread_page
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("threads", __name__)


def _answer(ack: dict):
    """A feature's answer over HTTP: a thread or conversation the socket calls ``invalid`` is
    one the path names and that is not there (404); too many drafts are a conflict (409)."""
    if ack.get("ok") is False:
        if ack["error"] == "invalid":
            ack = {**ack, "error": "not_found"}
        if ack["error"] == "too_many":
            response = jsonify(ack)
            response.status_code = 409
            return response
    return send_answer(ack) if not ack.get("ok") else jsonify(ack)


@operation(bp, "/conversations/<id:conversation_id>/threads/<root_id>/messages",
           answers={200: ThreadPage}, errors=(404,), query=HistoryQuery, tag="threads")
def thread_messages(conversation_id: int, root_id: str, query: HistoryQuery):
    """A thread: its root and a page of its replies, oldest first within the page.

    Paged as GET /api/conversations/{id}/messages: without `before` or `after` the newest page;
    `before`: the page older than that reply; `after`: the replies newer than it. Participants
    only, but for a public channel, which anyone signed in may read; anyone else, and a
    root_id that is no thread's root in this conversation (a reply, a system line, another
    conversation's message), gets 404.
    """
    root = parse_message_id(root_id)
    if root is None or readable_conversation(current_user.id, conversation_id) is None:
        return api_error("not_found", 404)
    if query.before is not None and query.after is not None:
        return api_error("invalid", 400)
    page = thread_page(conversation_id, root, query.before, query.after, query.limit)
    return jsonify(page) if page is not None else api_error("not_found", 404)


@operation(bp, "/threads", answers={200: ThreadList}, query=ThreadQuery, tag="threads")
def threads(query: ThreadQuery):
    """The threads I follow, newest reply first, with my unread counts.

    Each with its root, `unread` (replies from others after my marker), `unread_mentions` (of
    those, the ones that mention me), `last_reply_at` and my marker; `unread=true` (or 1):
    only those with unread replies. `limit` threads (default 50, at most 200); pass
    `next_before` back as `before` for the next page. Threads of conversations I left are not
    listed.
    """
    before = parse_thread_cursor(query.before) if query.before is not None else None
    return jsonify(followed_threads(current_user.id, query.unread, query.limit, before))


@operation(bp, "/conversations/<id:conversation_id>/threads/<root_id>/follow", "POST",
           answers={200: Following}, errors=(403, 404), body=FollowChange, tag="threads")
def follow(conversation_id: int, root_id: str, body: FollowChange):
    """Follow a thread, or stop following it (as the socket's follow_thread).

    My other pages and devices hear `thread_followed`. 403 for a conversation I am not in; 404
    for a root_id that is no thread's root there.
    """
    return _answer(follow_thread(current_user, {"conversation_id": conversation_id,
                                                "thread_id": root_id, "on": body.on}))


@operation(bp, "/conversations/<id:conversation_id>/threads/<root_id>/read", "POST",
           answers={200: ThreadMarker}, errors=(403, 404), body=MessageMarker, tag="threads")
def read_thread(conversation_id: int, root_id: str, body: MessageMarker):
    """Move my read marker in a thread forward (as the socket's thread_read).

    message_id is one of its replies, or the root (nothing read); the marker never moves
    back. 403 for a conversation I am not in; 404 for a root_id that is no thread's root there
    or a message that is not one of its replies.
    """
    return _answer(thread_read(current_user, {"conversation_id": conversation_id,
                                              "thread_id": root_id,
                                              "message_id": body.message_id}))


@operation(bp, "/conversations/<id:conversation_id>/unread", "POST",
           answers={200: Unmarked}, errors=(403, 404), body=MessageMarker, tag="threads")
def unread(conversation_id: int, body: MessageMarker):
    """Mark a message unread (as the socket's mark_unread).

    My read marker moves to just before it: it and everything after it are unread again,
    everything before it read. My other pages and devices hear `marked_unread` with the new
    counts. 403 for a conversation I am not in; 404 for a message not in its own flow.
    """
    return _answer(mark_unread(current_user, {"conversation_id": conversation_id,
                                              "message_id": body.message_id}))


@operation(bp, "/conversations/<id:conversation_id>/draft", "PUT", answers={200: DraftSaved},
           errors=(403, 404, 409), body=DraftChange, tag="threads")
def put_draft(conversation_id: int, body: DraftChange):
    """Keep my draft of a conversation's composer (or a thread's, with thread_id).

    Text with nothing but blanks deletes it. My other pages and devices hear `draft`. Sending a
    message there deletes it once the message is stored, unless it was saved after the send.
    403 for a conversation I am not in; 404 for a thread_id that is no thread's root there; 409
    too_many past 1,000 drafts.
    """
    return _answer(save_draft(current_user.id, conversation_id, body.message, body.thread_id))


@operation(bp, "/drafts", answers={200: DraftList}, tag="threads")
def drafts():
    """My drafts, newest first: each conversation's and each thread's composer's."""
    return jsonify({"ok": True, "drafts": drafts_of(current_user.id)})
