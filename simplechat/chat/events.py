"""Socket.IO handlers of the ``/chat`` namespace: parse, call, answer."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from flask import current_app, g, request
from flask_socketio import ConnectionRefusedError as ConnectRefused
from flask_socketio import join_room, leave_room

from simplechat.answers import error
from simplechat.auth.sessions import socket_login
from simplechat.auth.tokens import socket_token_login
from simplechat.conversations.channels import join_channel
from simplechat.conversations.groups import (
    add_participants,
    leave_conversation,
    rename_conversation,
)
from simplechat.conversations.moderation import (
    archive_conversation,
    delete_message,
    describe_conversation,
    remove_participant,
    set_role,
)
from simplechat.conversations.reports import report_message
from simplechat.extensions import end_transaction, socketio
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import (
    membership,
    membership_refusal,
    valid_conversation_id,
)
from simplechat.infra.redis_client import Batch
from simplechat.infra.services import services
from simplechat.messaging.edits import edit_message
from simplechat.messaging.history import messages_after, recent_messages
from simplechat.messaging.reactions import react
from simplechat.messaging.read_state import mark_read
from simplechat.messaging.send import send_message
from simplechat.notifications.delivery import queue_clear
from simplechat.notifications.focus import set_focus, socket_gone, socket_joined, socket_left
from simplechat.observability.activity import record_error
from simplechat.observability.metrics import (
    count_join,
    count_refusal,
    socket_connected,
    socket_disconnected,
)
from simplechat.realtime.emit import emit_to
from simplechat.realtime.event_limits import TURNS, Refusals, Turns, held_refusals, spend, spend_ms
from simplechat.realtime.presence import (
    asked_user_ids,
    presence,
    status_after,
    statuses,
    subscribe,
)
from simplechat.realtime.rooms import NAMESPACE, room, user_room
from simplechat.realtime.sockets import SocketUser, arrive, depart, enter_rooms, socket_user
from simplechat.slash_commands.invoke import run_if_command

log = logging.getLogger(__name__)


def chat_event(name: str, budget: str | None = "events", one_at_a_time: bool = False,
               holds: bool = False, in_turn: bool = False) -> Callable:
    """Register a handler that gets the socket's user and a dict payload, and always answers.

    The user comes from the socket's session, checked against the shared session cache (no SQL
    per event); a session ended since connecting gets ``unauthorized``. An event past the
    user's ``budget`` (realtime/event_limits.py; None: the handler has a per-user limit of its
    own), or, ``one_at_a_time``, sent while the socket's previous one still runs, gets
    ``rate_limited`` and does nothing. Any other payload shape gets ``invalid``; an unexpected
    exception is recorded in GenericErrorLog and answered with ``unavailable``.

    With ``in_turn``, the event waits for a turn among the process's connects and joins
    (realtime/event_limits.py) before anything else, the session check included.

    A budget's refusal, and with ``holds`` the handler's ``rate_limited`` (with its
    retry_after) or ``forbidden`` for a conversation, is answered again as the user's next
    such events arrive, without running them, while it holds (held_refusals()).
    """

    def decorator(handler: Callable[[SocketUser, dict], dict]) -> Callable:
        @functools.wraps(handler)
        def wrapper(data=None, *_ignored):
            if in_turn:
                with connect_turns().turn():
                    return checked(data)
            return checked(data)

        def checked(data) -> dict:
            try:
                user = socket_user(request.sid)
            except Exception:
                # Neither the session cache nor the database answered: the client retries later.
                log.warning("socket:%s: could not check the session", name, exc_info=True)
                return error("unavailable")
            if user is None:
                return error("unauthorized")
            if one_at_a_time:
                if name in user.running:
                    return error("rate_limited", retry_after=1.0)
                user.running.add(name)
            try:
                return run(user, data)
            finally:
                if one_at_a_time:
                    user.running.discard(name)

        def run(user: SocketUser, data) -> dict:
            if budget is not None and (wait_ms := spend_ms(user.id, budget)):
                refused = error("rate_limited", retry_after=float(max(-(-wait_ms // 1000), 1)))
                held_refusals().remember(request.sid, user.id, name, refused, wait_ms / 1000,
                                         whole_seconds=True)
                count_refusal(f"socket_{budget}_rate")
                return refused
            if not isinstance(data, dict):
                return error("invalid")
            g._login_user = user  # current_user, for anything the handler calls
            g.log_user_id = user.id
            conversation_id = data.get("conversation_id")
            g.log_conversation_id = conversation_id if isinstance(conversation_id, int) else None
            try:
                answer = handler(user, data)
            except Exception as exc:
                record_error(f"socket:{name}", exc, user.id)
                return error("unavailable")
            if holds and answer.get("ok") is False:
                _hold(user.id, answer, conversation_id)
            return answer

        def _hold(user_id: int, answer: dict, conversation_id: object) -> None:
            """A refusal that will hold for a while is answered from held_refusals() until
            then (realtime/event_limits.py: Refusals)."""
            if answer["error"] == "rate_limited" and answer.get("retry_after"):
                held_refusals().remember(request.sid, user_id, name, answer,
                                         answer["retry_after"])
            elif answer["error"] == "forbidden" and type(conversation_id) is int:
                held_refusals().remember(request.sid, user_id, name, answer,
                                         Refusals.FORBIDDEN_MEMO, conversation_id)

        socketio.on_event(name, wrapper, namespace=NAMESPACE)
        return wrapper

    return decorator


def connect_turns() -> Turns:
    return current_app.extensions[TURNS]


@socketio.on("connect", namespace=NAMESPACE)
def on_connect(auth=None):
    with connect_turns().turn():
        return _connect(auth)


def _connect(auth) -> bool:
    # The session check: from the session cache when warm, else one SQL read (socket_login);
    # a program sends an API token instead (auth: {"token": ...}), checked the same way.
    user = (socket_token_login(auth["token"]) if isinstance(auth, dict) and "token" in auth
            else socket_login())
    if user is None:
        return False  # refused: the client gets a connect_error
    g._login_user = user  # current_user, for anything connect calls
    end_transaction()  # a database connection goes back to the pool before the Redis work
    # Counted, recorded, marked live, and who hears of the user's presence: one Redis round
    # trip.
    arrived = arrive(request.sid, user)
    if arrived is None:
        # The client gets a connect_error whose message is the code (and does not retry).
        raise ConnectRefused("too_many_sockets",
                             {"max_sockets": current_app.config["CHAT_MAX_SOCKETS_PER_USER"]})
    try:
        enter_rooms(request.sid, [user_room(user.id), user.room])
        held_refusals().attach(request.sid, user.id)
    except Exception:
        depart(request.sid)
        raise
    # Later events need nothing from the cookie (the user is in the registry, the session copy
    # in Flask-SocketIO's environ): without it, Flask does not decode and verify the signed
    # session cookie again for every event.
    request.environ.pop("HTTP_COOKIE", None)
    socket_connected()
    if arrived.came_online:
        _announce_presence(user.id, arrived.rooms, status_after(True))
    return True


@socketio.on("disconnect", namespace=NAMESPACE)
def on_disconnect(reason=None):
    socket_disconnected()
    held_refusals().forget(request.sid)
    gone = depart(request.sid)
    if gone is not None:
        if gone.last_seen is not None:
            _announce_presence(gone.user.id, gone.rooms, status_after(False, gone.last_seen))
        socket_gone(gone.user.id, request.sid)


@socketio.on("*", namespace=NAMESPACE)
def on_unknown_event(event, *_args):
    """An event this server does not know: answered, when the client asked for an answer
    (from the user's budget of events, like the cheap ones it knows)."""
    try:
        user = socket_user(request.sid)
    except Exception:
        user = None  # the session cache did not answer: the answer is the same anyway
    if user is not None and (wait := spend(user.id, "events")):
        return error("rate_limited", retry_after=wait)
    return error("unknown_event")


def _announce_presence(user_id: int, rooms: list[str], status: dict) -> None:
    """Tell ``rooms``, those who follow the user (realtime/presence.py: audience; never a big
    group's room), that the user came online or went offline. Presence is a nicety: a Redis
    outage must not refuse sockets.

    The rooms were read in the same round trip as the change, before it (``arrive``,
    ``depart``), and nothing waits on Redis between the change and its announcement: a socket
    going and another coming at once (a page reloaded) are announced in the order Redis
    recorded them, so the peer is not left seeing the user offline."""
    if not rooms:
        return
    try:
        emit_to(rooms, "presence", {"user_id": user_id, **status})
    except Exception:
        log.warning("presence of user %s not announced", user_id, exc_info=True)


def _stranger_refusal(user_id: int, conversation_id: object) -> str | None:
    """``invalid`` for a value that cannot be a conversation id, ``forbidden`` for one that is
    not in the user's own list of conversations (the membership cache's one entry per user,
    read at connect), else None. Asked before anything about the conversation itself: that
    read (``membership_refusal``, ``markers_view``) fills a cache entry for the id from SQL on
    a miss, so an id the user is not in would cost an SQL read and a Redis key each."""
    if not valid_conversation_id(conversation_id):
        return "invalid"
    return None if conversation_id in membership().direct_peers(user_id) else "forbidden"


# A join's answer holds up to CHAT_RECENT_MESSAGES messages: a socket runs one at a time (the
# page waits for each answer), so a user's sockets cannot pile up hundreds of them at once.
@chat_event("join", budget="join", one_at_a_time=True, in_turn=True)
@count_join
def on_join(user: SocketUser, data: dict) -> dict:
    conversation_id = data.get("conversation_id")
    if not valid_conversation_id(conversation_id):
        return error("invalid")
    after = data.get("after")
    if after is not None:
        after = parse_message_id(after)
        if after is None:
            return error("invalid")
    # The members a page shows, whose presence a big room's answer carries (the page asked
    # for it with a `presence` event after each join before).
    wanted: list[int] | None = []
    if "presence_of" in data:
        wanted = asked_user_ids(data["presence_of"])
        if wanted is None:
            return error("invalid")
    # The members' read markers from the membership cache: in a conversation of more than
    # CHAT_PRESENCE_PUSH_MAX_MEMBERS, the caller's alone, so the answer stays small. Asked
    # with the user's own list of conversations in one round trip: None when the id is not
    # there (see _stranger_refusal).
    view = membership().listed_markers_view(conversation_id, user.id)
    if view is None or user.id not in view[0]:
        return error("forbidden")
    markers, member_count = view
    join_room(room(conversation_id))
    socket_joined(user.id, request.sid, conversation_id)  # looking at it, for notifications
    pushed = member_count <= current_app.config["CHAT_PRESENCE_PUSH_MAX_MEMBERS"]
    # A small room's answer holds every member's presence (presence_of adds nothing); a big
    # room's the caller's, online on this very socket, and that of the members among those
    # named in presence_of.
    asked = list(markers) if pushed else [uid for uid in wanted if uid != user.id]
    read, present = _recent_and_presence(conversation_id, asked, among=not pushed)
    if after is None:
        messages, has_more, _source = recent_messages(conversation_id, read=read)
    else:
        messages, has_more, _source = messages_after(conversation_id, after, read=read)
    if not pushed:
        present[str(user.id)] = status_after(True)
    return {"ok": True, "messages": messages, "has_more": has_more,
            "read": {str(uid): mid for uid, mid in markers.items()},
            "presence": present, "presence_pushed": pushed}


def _recent_and_presence(conversation_id: int, user_ids: list[int], among: bool = False
                         ) -> tuple[tuple[list[dict], str | None] | None, dict[str, dict]]:
    """What the recent-message cache holds for a conversation (None: ask again, the usual way)
    and the status of ``user_ids`` (with ``among``, of those of them who take part in it): with
    Redis, one round trip for all of it. Read after the socket entered the room, as a join's
    answer must be."""
    cache, tracker, redis = services().cache, presence(), services().redis
    if redis is None or not hasattr(cache, "queue_recent") or not hasattr(tracker,
                                                                          "queue_status"):
        if among and user_ids:
            user_ids = membership().members_among(conversation_id, user_ids)
        return None, statuses(user_ids)
    batch = Batch(redis)
    listed = cache.queue_recent(batch, conversation_id)
    members = membership().queue_among(batch, conversation_id, user_ids) \
        if among and user_ids else None
    asked = tracker.queue_status(batch, user_ids) if user_ids else None
    replies = _replies(batch)
    try:
        read = cache.recent_from(replies, listed)
    except Exception:
        read = None  # recent_messages asks again, and says why when it fails
    if asked is None:
        return read, {}
    shown = user_ids if members is None else \
        membership().among_from(conversation_id, user_ids, replies[members])
    return read, _statuses_from(tracker, user_ids, replies[asked], shown)


def _replies(batch: Batch) -> list:
    """A batch's replies; while Redis is away, its error as every step's reply."""
    try:
        return batch.run()
    except Exception as exc:
        return [exc] * len(batch)


def _statuses_from(tracker, user_ids: list[int], reply, shown: list[int]) -> dict[str, dict]:
    """The status of ``shown`` (among ``user_ids``) from a batch's reply to
    ``queue_status(user_ids)``; empty when the tracker could not answer, as ``statuses``."""
    try:
        found = tracker.status_from(user_ids, reply)
    except Exception:
        log.warning("presence unavailable", exc_info=True)
        return {}
    return {str(uid): found[uid] for uid in shown}


@chat_event("leave")
def on_leave(user: SocketUser, data: dict) -> dict:
    conversation_id = data.get("conversation_id")
    if not valid_conversation_id(conversation_id):
        return error("invalid")
    leave_room(room(conversation_id))  # leaving a room one is not in changes nothing
    socket_left(user.id, request.sid, conversation_id)
    return {"ok": True}


@chat_event("focus")
def on_focus(user: SocketUser, data: dict) -> dict:
    """The page shown (``conversation_id``) or hidden/blurred (null): whether this socket
    counts as looking at its conversations, so that they are not pushed to the user."""
    return set_focus(user.id, request.sid, data)


@chat_event("send_message", budget=None, holds=True)  # CHAT_RATE_LIMIT, per user
def on_send_message(user: SocketUser, data: dict) -> dict:
    ran = run_if_command(user, data)  # a registered /name is a command, not a message
    if ran is not None:
        return ran
    return send_message(
        user,
        data.get("conversation_id"),
        data.get("message"),
        data.get("client_id"),
        data.get("reply_to"),
        data.get("attachments"),
        data.get("thread_id"),
        data.get("also_to_conversation"),
    )


@chat_event("heartbeat")
def on_heartbeat(user: SocketUser, data: dict) -> dict:
    """Keeps this socket counted as online (clients send it every 25 seconds)."""
    presence().touch(user.id, request.sid)
    return {"ok": True}


@chat_event("presence")
def on_presence(user: SocketUser, data: dict) -> dict:
    """Online state and last-seen time of a conversation's participants: those named in
    ``user_ids`` (up to 100), else all of a small conversation's (a big one's: the caller's)."""
    conversation_id = data.get("conversation_id")
    wanted = asked_user_ids(data["user_ids"]) if "user_ids" in data else None
    if wanted is not None and valid_conversation_id(conversation_id):
        found = _members_presence(user.id, conversation_id, wanted)
        return error("forbidden") if found is None else {"ok": True, "presence": found}
    refusal = _stranger_refusal(user.id, conversation_id)
    if refusal:
        return error(refusal)
    if "user_ids" in data:  # not a list of user ids
        return error("invalid")
    markers, _count = membership().markers_view(conversation_id, user.id)
    if user.id not in markers:
        return error("forbidden")
    return {"ok": True, "presence": statuses(list(markers))}


def _members_presence(user_id: int, conversation_id: int, wanted: list[int]
                      ) -> dict[str, dict] | None:
    """The status of those of ``wanted`` who take part in a conversation the user takes part
    in, else None: with Redis, one round trip for the user's own list (asked first, as
    ``_stranger_refusal`` does), the members among them and their presence (a page's header
    asks so for the members it shows, every socket of a reconnect storm at once)."""
    cache, tracker, redis = membership(), presence(), services().redis
    if redis is None or not hasattr(cache, "queue_listed_among") \
            or not hasattr(tracker, "queue_status"):
        if _stranger_refusal(user_id, conversation_id):
            return None
        members = cache.members_among(conversation_id, [user_id, *wanted])
        present = set(members) if user_id in members else None
        return None if present is None else statuses([uid for uid in wanted if uid in present])
    batch = Batch(redis)
    steps = cache.queue_listed_among(batch, conversation_id, user_id, wanted)
    asked = tracker.queue_status(batch, wanted) if wanted else None
    replies = _replies(batch)
    members = cache.listed_among_from(conversation_id, user_id, wanted, replies, steps)
    if members is None or user_id not in members:
        return None
    present = set(members)
    shown = [uid for uid in wanted if uid in present]
    if asked is None or not shown:
        return {}
    return _statuses_from(tracker, wanted, replies[asked], shown)


@chat_event("presence_subscribe")
def on_presence_subscribe(user: SocketUser, data: dict) -> dict:
    """Follow the presence of up to 100 members of a conversation (a big one's members hear
    no presence pushed): replaces this socket's earlier subscriptions."""
    refusal = _stranger_refusal(user.id, data.get("conversation_id"))
    if refusal:
        return error(refusal)
    return subscribe(request.sid, user.id, data.get("conversation_id"), data.get("user_ids"))


@chat_event("typing", budget="typing")
def on_typing(user: SocketUser, data: dict) -> dict:
    """Relay "is typing" to the others in the room; never stored."""
    typing = data.get("typing", True)
    conversation_id = data.get("conversation_id")
    refusal = (_stranger_refusal(user.id, conversation_id)
               or membership_refusal(user.id, conversation_id))
    if refusal or not isinstance(typing, bool):
        return error(refusal or "invalid")
    emit_to(room(conversation_id), "typing",
            {"conversation_id": conversation_id, "user_id": user.id, "name": user.full_name,
             "typing": typing}, skip_sid=request.sid)
    return {"ok": True}


@chat_event("read")
def on_read(user: SocketUser, data: dict) -> dict:
    answer = mark_read(user, data)
    if answer.get("ok"):  # read here: its notification closes on the user's other devices
        queue_clear(user.id, data["conversation_id"], user.session_id or None)
    return answer


@chat_event("edit_message", budget=None)  # CHAT_CHANGE_RATE_LIMIT, per user
def on_edit_message(user: SocketUser, data: dict) -> dict:
    return edit_message(user, data)


@chat_event("delete_message", budget=None)  # CHAT_CHANGE_RATE_LIMIT, per user
def on_delete_message(user: SocketUser, data: dict) -> dict:
    """One's own message, or anyone's for an owner or admin of a group or channel."""
    return delete_message(user, data)


@chat_event("report_message")
def on_report_message(user: SocketUser, data: dict) -> dict:
    """Report a message to the site admins (participants only; one open report each)."""
    return report_message(user, data)


@chat_event("react", budget=None)  # CHAT_REACT_RATE_LIMIT, per user
def on_react(user: SocketUser, data: dict) -> dict:
    return react(user, data)


@chat_event("rename_conversation")
def on_rename_conversation(user: SocketUser, data: dict) -> dict:
    return rename_conversation(user, data)


@chat_event("add_participants")
def on_add_participants(user: SocketUser, data: dict) -> dict:
    return add_participants(user, data)


@chat_event("leave_conversation")
def on_leave_conversation(user: SocketUser, data: dict) -> dict:
    return leave_conversation(user, data)


@chat_event("join_channel")
def on_join_channel(user: SocketUser, data: dict) -> dict:
    """Become a member of a public channel; then ``join`` it as any conversation."""
    return join_channel(user, data)


@chat_event("remove_participant")
def on_remove_participant(user: SocketUser, data: dict) -> dict:
    return remove_participant(user, data)


@chat_event("set_role")
def on_set_role(user: SocketUser, data: dict) -> dict:
    return set_role(user, data)


@chat_event("describe_conversation")
def on_describe_conversation(user: SocketUser, data: dict) -> dict:
    return describe_conversation(user, data)


@chat_event("archive_conversation")
def on_archive_conversation(user: SocketUser, data: dict) -> dict:
    return archive_conversation(user, data)
