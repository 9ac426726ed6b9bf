"""The send path: validate, limit, assign id and time, cache, queue the SQL write, fan out.

One plain function, called by the Socket.IO handler, the REST route, incoming webhooks and the
tests alike. The cheap checks come first: the payload's shape, then, for a message with costly
work ahead (mentions, a reply, files, Markdown rendering on the CPU pool), membership, a retry's
original and the rate limit, taken in one round trip before any of that work
(infra.intake.admit); a plain line has all three taken by the intake itself.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from flask import current_app

from simplechat.answers import error
from simplechat.extensions import end_transaction
from simplechat.infra.cache import bump_thread
from simplechat.infra.ids import new_message_id, parse_message_id
from simplechat.infra.intake import (
    ARCHIVED,
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    OK,
    RATE_LIMITED,
    ROOT_UNKNOWN,
    UNCONFIRMED,
    UNKNOWN,
    Taken,
    intake,
)
from simplechat.infra.membership import membership, valid_conversation_id
from simplechat.infra.offload import Busy, offload
from simplechat.infra.services import services
from simplechat.messaging.formatting import plain_html, render_html
from simplechat.messaging.mentions import resolve_mentions
from simplechat.messaging.payload import message_payload, reply_summary
from simplechat.messaging.replies import find_message
from simplechat.observability.metrics import observe_send
from simplechat.realtime.coalesced import coalesced
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import room, user_room

log = logging.getLogger(__name__)

# C0 control characters other than tab and newline, and DEL: never stored.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_CLIENT_ID = 64


class Unavailable(Exception):
    """Redis or the broker could not take the message: nothing was promised."""


def clean_text(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def checked_text(text: object, allow_empty: bool = False) -> tuple[str, dict | None]:
    """The text as it will be stored, or an error ack: the rules for sending and editing
    (``allow_empty``: a message carrying files needs no text)."""
    if not isinstance(text, str):
        return "", error("invalid")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored
        return "", error("invalid")
    # The limit applies to what is stored: surrounding blanks and control characters go first.
    text = clean_text(text)
    if not text and not allow_empty:
        return "", error("empty")
    limit = current_app.config["CHAT_MAX_MESSAGE_LENGTH"]
    if len(text) > limit:
        return "", error("too_long", max_length=limit)
    return text, None


class Sender(Protocol):
    """Who sends: a User, or the user of a socket (realtime.sockets.SocketUser)."""

    id: int
    full_name: str


def _retry_answer(original: dict, content: tuple | None) -> dict:
    """The answer to a send whose client id was seen before in this conversation: the original
    message if it is the same text, reply, files and thread (a retry), else ``conflict``."""
    text, reply_id, attachment_ids, thread_id = content or (None, None, [], None)
    if (original.get("message") != text
            or (original.get("reply_to") or {}).get("id") != reply_id
            or [a["id"] for a in original.get("attachments") or []] != attachment_ids
            or original.get("thread_id") != thread_id):
        return error("conflict")
    return {"ok": True, "message": original, "duplicate": True}


@observe_send
def send_message(sender: Sender, conversation_id: object, text: object,
                 client_id: object = None, reply_to: object = None,
                 attachments: object = None, thread_id: object = None,
                 also_to_conversation: object = None, *, unknown: str = "invalid") -> dict:
    """Send ``text`` from ``sender`` to a conversation; returns the acknowledgement.

    ``reply_to`` names a message of the same conversation, ``attachments`` up to 10 of the
    sender's uploads to it not sent yet, ``thread_id`` the root of the thread the message
    replies in (a main-flow message of the same conversation, not a system line), shown in the main
    flow too with ``also_to_conversation`` (ignored without a thread); ``unknown`` is the
    error code when any of them names nothing the sender may use there (the socket
    protocol's ``invalid``; the REST routes, whose bodies were checked against the document
    already, pass ``not_found``).

    Only a message that uses them pays for them: a plain one-line message is one Redis round
    trip; one that needs Markdown, mentions, a reply or files is two (it is admitted first, so
    a stranger, a retry or a sender over the limit is answered before any of that work)."""
    from simplechat.attachments.records import claim, parse_ids, release

    # 1. The payload's shape and the text: no I/O.
    if not valid_conversation_id(conversation_id) or not isinstance(text, str):
        return error("invalid")
    if client_id is not None and (
        not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID
    ):
        return error("invalid")
    reply_id = None
    if reply_to is not None:
        reply_id = parse_message_id(reply_to)
        if reply_id is None:
            return error("invalid")
    root_id = None
    if thread_id is not None:
        root_id = parse_message_id(thread_id)
        if root_id is None:
            return error("invalid")
    if also_to_conversation is None:
        also_to_conversation = False
    if not isinstance(also_to_conversation, bool):
        return error("invalid")
    also_to_conversation = also_to_conversation and root_id is not None  # else: no meaning
    attachment_ids, code = parse_ids(attachments)
    if code:
        return error(code, **({"max_attachments": MAX_ATTACHMENTS} if code == "too_many" else {}))
    text, refusal = checked_text(text, allow_empty=bool(attachment_ids))
    if refusal:
        return refusal
    sender_id, sender_name = sender.id, sender.full_name
    # A client id is the sender's own, in one conversation.
    dedupe_key = f"{sender_id}:{conversation_id}:{client_id}" if client_id else None
    content = (text, reply_id, attachment_ids or [], root_id)
    message_id = new_message_id()
    html = plain_html(text)  # None: the Markdown parser is needed (mentions included)
    members = _Members(conversation_id)
    files: list[dict] = []
    admitted = html is None or bool(reply_id or attachment_ids)
    try:
        # 2. Membership, a retry's original and the rate limit (taken) before anything costly,
        # and before a stranger learns anything about the conversation's messages.
        if admitted:
            answer = _admit(conversation_id, sender_id, dedupe_key, content, members)
            if answer is not None:
                return answer
        # 3. What the text mentions and the message it answers, read only when used.
        mentions, names = resolve_mentions(text, conversation_id, sender_id, members)
        summary = None
        if reply_id:
            target = find_message(conversation_id, reply_id)
            if target is None or target.get("deleted"):
                return error(unknown)
            summary = reply_summary(target)
        end_transaction()  # no database connection held while the text waits for the pool
    except Exception:
        log.warning("send to conversation %s refused: storage unavailable", conversation_id,
                    exc_info=True)
        return error("unavailable")
    if html is None:
        # 4. The Markdown, on the CPU pool: the event loop serves everyone else meanwhile.
        try:
            html = offload(render_html, text, names)
        except Busy:
            return error("unavailable")
    if attachment_ids:
        # 5. The files, claimed last: nothing after this refuses but the intake.
        try:
            files, code = claim(sender_id, conversation_id, attachment_ids, message_id)
            if code == "already_sent" and dedupe_key:
                original = services().cache.lookup(dedupe_key)
                if original is not None:  # a retry of a send that took them
                    return _retry_answer(original, content)
            if code:
                return error(unknown if code == "invalid" else code)
            end_transaction()
        except Exception:
            log.warning("send to conversation %s refused: storage unavailable",
                        conversation_id, exc_info=True)
            return error("unavailable")
    payload = message_payload(message_id, conversation_id, None, text, client_id,
                              sender_id=sender_id, sender_name=sender_name,
                              html=html, reply_to=summary,
                              mentions=mentions, attachments=files, thread_id=root_id,
                              also_to_conversation=also_to_conversation)
    # An admitted send has taken its token already.
    ack = deliver(payload, dedupe_key, content, limited=not admitted, unknown=unknown)
    if files and not (ack["ok"] and ack["message"]["id"] == message_id):
        try:
            release(message_id)
        except Exception:
            log.warning("attachments of refused message %s not released", message_id)
    elif mentions and ack["ok"] and not ack.get("duplicate"):
        tell_mentioned(payload, mentions, sender_id)
    return ack


MAX_ATTACHMENTS = 10


class _Members:
    """The conversation's member ids from the membership cache, read once and only if asked
    (or handed over by the admission check, which read them already)."""

    def __init__(self, conversation_id: int):
        self._conversation_id = conversation_id
        self._ids: list[int] | None = None

    def __call__(self) -> list[int]:
        if self._ids is None:
            self._ids = list(membership().members(self._conversation_id))
        return self._ids

    def known(self, ids: list[int]) -> None:
        self._ids = ids


def _admit(conversation_id: int, sender_id: int, dedupe_key: str | None, content: tuple,
           members: _Members) -> dict | None:
    """None when the send may go on to its costly steps, its rate limit taken (one round trip;
    a second, after SQL, when the members were not cached); else the answer: ``forbidden``, a
    retry's original (or ``conflict``), or ``rate_limited``."""
    gate = intake()
    taken = gate.admit(conversation_id, sender_id, dedupe_key)
    if taken.status == UNKNOWN:  # members not cached: read from SQL once (and cached)
        ids, archived = membership().state(conversation_id)
        members.known(list(ids))
        if sender_id not in ids:
            return error("forbidden")
        if archived:
            return error("archived")
        taken = gate.admit(conversation_id, sender_id, dedupe_key, members=members())
    if taken.status in (FORBIDDEN, ARCHIVED):
        return error(taken.status)
    if taken.status == DUPLICATE:
        return _retry_answer(taken.original, content)
    if taken.status == RATE_LIMITED:
        return error("rate_limited", retry_after=round(taken.wait, 3))
    members.known(taken.members)
    return None


def tell_mentioned(payload: dict, mentioned: list[int], sender_id: int) -> None:
    """Each mentioned user's personal room gets ``mention`` (their notification)."""
    rooms = [user_room(uid) for uid in mentioned if uid != sender_id]
    try:
        emit_to(rooms, "mention", {"conversation_id": payload["conversation_id"],
                                   "message": payload})
    except Exception:
        log.exception("mention of message %s not sent", payload["id"])


def deliver(payload: dict, dedupe_key: str | None = None, content: tuple | None = None,
            members: list[int] | None = None, limited: bool = True,
            unknown: str = "invalid") -> dict:
    """Steps 3-6 for a payload made: take it in, queue its SQL write, fan it out, answer.

    ``members`` (from SQL) skips the cached membership and archived checks (a system line
    about archiving is posted in the archived conversation); ``limited=False`` skips the rate
    limit (a system line is not the actor's to spend; an admitted send took its token). A
    thread reply whose root is no root answers ``unknown``."""
    conversation_id = payload["conversation_id"]
    try:
        # 3-4. Membership, a retry's original, the rate limit, the recent list (the thread's
        # for a thread reply, whose root's summary is updated) and the queued SQL write: one
        # round trip to Redis.
        taken = _take(conversation_id, payload["sender"], payload, dedupe_key, members, limited)
        if taken.status in (FORBIDDEN, ARCHIVED):
            return error(taken.status)
        if taken.status == INVALID:
            return error(unknown)
        if taken.status == DUPLICATE:
            return _retry_answer(taken.original, content)
        if taken.status == RATE_LIMITED:
            return error("rate_limited", retry_after=round(taken.wait, 3))
        if taken.status == UNCONFIRMED:  # CHAT_ACK_REPLICAS not reached: taken back
            log.warning("send to conversation %s refused: replicas did not confirm it",
                        conversation_id)
            return error("unavailable")
        _queue_flush(payload, dedupe_key, taken.flush)
    except Unavailable:
        return error("unavailable")
    except Exception:
        log.warning("send to conversation %s refused: storage unavailable", conversation_id,
                    exc_info=True)
        return error("unavailable")
    # 5. Fan out, once per socket: the room (who has the conversation open) and every member's
    # personal room (conversation lists, unread counts), on every process. The message is
    # already safe: a failed emit is caught up by clients through `join` with `after`.
    try:
        emit_to([room(conversation_id), *(user_room(uid) for uid in taken.members)],
                "message", payload)
        if payload.get("thread_id"):  # the root's "N replies" under it, for the room
            coalesced().emit(payload["thread_id"], room(conversation_id), "message_updated",
                             taken.root or _stored_root(conversation_id, payload["thread_id"]))
    except Exception:
        log.exception("fan-out of message %s failed", payload["id"])
    # 6. The acknowledgement: the write is queued and will reach SQL (and, with
    # CHAT_ACK_REPLICAS, its entry is on that many Redis replicas).
    return {"ok": True, "message": payload}


def _take(conversation_id: int, sender_id: int, payload: dict, dedupe_key: str | None,
          members: list[int] | None = None, limited: bool = True) -> Taken:
    """The intake's answer; members not cached are read from SQL once (and cached), and a
    thread reply's root not in the recent list is looked up where it is (SQL, the write
    buffer), once: then the intake is asked again (at most three times in all)."""
    gate = intake()
    root: dict | None = None
    for _ in range(3):
        taken = gate.take(conversation_id, sender_id, payload, dedupe_key, members=members,
                          limited=limited, root_known=root is not None)
        if taken.status == UNKNOWN and members is None:
            ids, archived = membership().state(conversation_id)
            end_transaction()
            members = list(ids)
            if sender_id not in members:
                return Taken(FORBIDDEN)
            if archived:
                return Taken(ARCHIVED)
        elif taken.status == ROOT_UNKNOWN and root is None:
            root = find_message(conversation_id, payload["thread_id"])
            end_transaction()
            if root is None or not is_root(root):
                return Taken(INVALID)
        else:
            if taken.status == OK and taken.root is None and root is not None:
                # Not in the recent list: its stored summary and this reply, for the room.
                taken.root = bump_thread(root, sender_id, payload["timestamp"])
            return taken
    raise RuntimeError("the intake asked again more than twice")


def _stored_root(conversation_id: int, root_id: str):
    """A root that is not in the recent list, as SQL has it (its summary of the stored
    replies), read when it is sent: at most once per CHAT_THREAD_SUMMARY_INTERVAL."""
    app = current_app._get_current_object()

    def read() -> dict | None:
        with app.app_context():
            return find_message(conversation_id, root_id)

    return read


def is_root(message: dict) -> bool:
    """Whether a message may have a thread: a main-flow message that is not a system line (a
    deleted one keeps its thread, and takes replies)."""
    return not (message.get("thread_id") or message.get("kind") == "system")


def _queue_flush(payload: dict, dedupe_key: str | None, needed: bool) -> None:
    """Make sure a flush of the write buffer is queued for a message the intake took; raises
    Unavailable (with the message taken back) when the broker cannot take the task."""
    from simplechat.infra.write_buffer import write_buffer
    from simplechat.messaging.tasks import flush_writes

    try:
        # Eager Celery (the embedded default, tests) stores it before the ack, as before.
        if needed or current_app.extensions["celery"].conf.task_always_eager:
            flush_writes.apply_async()
    except Exception as exc:
        log.warning("could not queue message %s", payload["id"], exc_info=True)
        try:
            if not write_buffer().take_back(payload):
                return  # a flush already holds it: it will be stored
        except Exception:
            log.warning("could not take message %s back from the write buffer", payload["id"])
            if intake().ack_replicas:
                # Replicas hold it (WAIT said so): it waits in the buffer for the next flush,
                # which a worker queues when it reaches the broker again (FlushOnConnect).
                return
        try:
            services().cache.remove(payload["conversation_id"], payload["id"], dedupe_key)
        except Exception:
            log.warning("could not take message %s back from the cache", payload["id"])
        raise Unavailable from exc
