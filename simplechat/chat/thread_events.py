"""Socket.IO handlers of the ``/chat`` namespace for threads and unread: ``thread``,
``follow_thread``, ``thread_read`` and ``mark_unread`` (registered with chat_event, as the
handlers of chat/events.py are: parse, call, answer)."""

from __future__ import annotations

from simplechat.chat.events import chat_event
from simplechat.messaging.read_state import mark_unread
from simplechat.realtime.sockets import SocketUser
from simplechat.threads.following import follow_thread, thread_read
from simplechat.threads.reading import thread_view


# Its answer holds up to CHAT_RECENT_MESSAGES replies, as join's does: the same budget, one at
# a time per socket.
@chat_event("thread", budget="join", one_at_a_time=True)
def on_thread(user: SocketUser, data: dict) -> dict:
    """A thread's root and its newest replies (or those after ``after``)."""
    return thread_view(user, data)


@chat_event("follow_thread")
def on_follow_thread(user: SocketUser, data: dict) -> dict:
    return follow_thread(user, data)


@chat_event("thread_read")
def on_thread_read(user: SocketUser, data: dict) -> dict:
    return thread_read(user, data)


@chat_event("mark_unread")
def on_mark_unread(user: SocketUser, data: dict) -> dict:
    return mark_unread(user, data)
