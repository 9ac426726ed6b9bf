"""The routes of the JSON API for programs: parse, call the chat feature's functions, answer."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template
from flask_login import current_user
from sqlalchemy import select

from simplechat.api.schemas import (
    ConversationAnswer,
    ConversationList,
    ConversationOne,
    IncomingHookMessage,
    Me,
    MuteChange,
    Muted,
    NewConversation,
    NewMessage,
    Sent,
)
from simplechat.api.spec import PUBLIC, SECRET_URL, openapi_document, operation
from simplechat.conversations.inbox import conversations_for
from simplechat.conversations.records import participant_conversation, set_muted, start_limited
from simplechat.extensions import db
from simplechat.messaging.send import send_message
from simplechat.models import Participant, User
from simplechat.observability.activity import record_activity
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("rest", __name__)
docs_bp = Blueprint("api_docs", __name__)

# The HTTP status of each error code of the send path's acknowledgement.
SEND_STATUS = {"invalid": 400, "empty": 400, "too_long": 400, "too_many": 400,
               "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
               "already_sent": 409, "rate_limited": 429, "unavailable": 503}


def send_answer(ack: dict) -> Response:
    """The HTTP answer of a send_message acknowledgement: 201 for a new message, 200 for a
    retry's original, the error's status otherwise (429 with Retry-After)."""
    response = jsonify(ack)
    if ack.get("ok"):
        response.status_code = 200 if ack.get("duplicate") else 201
        return response
    response.status_code = SEND_STATUS.get(ack.get("error"), 400)
    if ack.get("retry_after") is not None:
        response.headers["Retry-After"] = str(max(1, int(-(-ack["retry_after"] // 1))))
    return response


def send_from_body(sender, conversation_id: int, body: NewMessage | IncomingHookMessage
                   ) -> Response:
    """The one call of the send path for HTTP callers (REST and incoming webhooks)."""
    # The body matched the document: a reply_to or an attachment id that names nothing of the
    # sender's here is a thing not found (404), not a malformed request.
    return send_answer(send_message(sender, conversation_id, body.message, body.client_id,
                                    getattr(body, "reply_to", None),
                                    getattr(body, "attachments", None), unknown="not_found"))


# --------------------------------------------------------------------------- me, conversations


@operation(bp, "/me", answers={200: Me}, tag="people")
def me():
    """The caller: id, username, names, and whether it is a bot."""
    user = current_user
    return jsonify({"id": user.id, "username": user.username, "first_name": user.first_name,
                    "last_name": user.last_name, "name": user.full_name,
                    "is_bot": bool(user.is_bot)})


def conversation_views(user: User, only: int | None = None) -> list[dict]:
    """The caller's conversations (or one of them), newest activity first, as the API shows
    them."""
    summaries = [s for s in conversations_for(user) if only is None or s.id == only]
    if not summaries:
        return []
    people: dict[int, list[dict]] = {s.id: [] for s in summaries}
    for cid, person in db.session.execute(
        select(Participant.conversation_id, User).join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id.in_(list(people))).order_by(User.id)
    ):
        people[cid].append({"id": person.id, "username": person.username,
                            "name": person.full_name, "is_bot": bool(person.is_bot)})
    return [{
        "id": s.id, "title": s.title, "is_group": s.is_group, "participants": people[s.id],
        "last_message": None if s.last_id is None else {
            "id": s.last_id, "sender": s.last_sender_id, "message": s.last_text or "",
            "timestamp": s.last_at.strftime("%Y-%m-%d %H:%M:%S")},
        "unread": s.unread,
        "unread_mentions": s.mentions,
        "muted": s.muted,
    } for s in summaries]


@operation(bp, "/conversations", answers={200: ConversationList})
def list_conversations():
    """My conversations, newest activity first.

    Each with its title, kind, participants, last message, unread count and how many of
    the unread messages mention me.
    """
    return jsonify({"ok": True, "conversations": conversation_views(current_user)})


@operation(bp, "/conversations", "POST", answers={200: ConversationAnswer,
                                                  201: ConversationAnswer},
           errors=(404, 429), body=NewConversation)
def create_conversation(body: NewConversation):
    """Start a conversation with people (by user id).

    With one other person the direct conversation between you is reused (200); otherwise a new
    one is made (201). A title names a group (three or more people). An id that names no
    other active user answers 404. New conversations are limited per user
    (CHAT_CONVERSATION_RATE_LIMIT, 429 with Retry-After); a reused one is not counted.
    """
    me_ = current_user._get_current_object()
    wanted = [i for i in dict.fromkeys(body.participants) if i != me_.id]
    picked = list(db.session.scalars(
        select(User).where(User.id.in_(wanted), User.is_active.is_(True)))) if wanted else []
    if not wanted or len(picked) != len(wanted):
        # An id of no active user, or only the caller's own: no one to talk to was found.
        return send_answer({"ok": False, "error": "not_found"})
    title = (body.title or "").strip() or None
    conversation, created, wait = start_limited(me_, picked, title)
    if conversation is None:
        return send_answer({"ok": False, "error": "rate_limited", "retry_after": round(wait, 3)})
    if created:
        record_activity("conversation_created", me_.id,
                        {"conversation_id": conversation.id, "by": "api",
                         "participants": [u.id for u in picked]})
    response = jsonify({"ok": True, "created": created,
                        "conversation": conversation_views(me_, conversation.id)[0]})
    response.status_code = 201 if created else 200
    return response


@operation(bp, "/conversations/<id:conversation_id>", answers={200: ConversationOne},
           errors=(404,))
def get_conversation(conversation_id: int):
    """One of my conversations; anyone else's is 404."""
    if participant_conversation(current_user.id, conversation_id) is None:
        return send_answer({"ok": False, "error": "not_found"})
    found = conversation_views(current_user, conversation_id)
    if not found:
        return send_answer({"ok": False, "error": "not_found"})
    return jsonify({"ok": True, "conversation": found[0]})


@operation(bp, "/conversations/<id:conversation_id>/mute", "POST", answers={200: Muted},
           errors=(404,), body=MuteChange)
def mute_conversation(conversation_id: int, body: MuteChange):
    """Mute or unmute one of my conversations.

    Muted, its messages raise no notification and leave the title-bar count alone (a mention
    of you still notifies); the list still counts them. Your other pages and devices hear of
    it as `conversation_muted`. 404 for a conversation you are not in.
    """
    if not set_muted(current_user.id, conversation_id, body.muted):
        return send_answer({"ok": False, "error": "not_found"})
    return jsonify({"ok": True, "conversation_id": conversation_id, "muted": body.muted})


@operation(bp, "/conversations/<id:conversation_id>/messages", "POST",
           answers={200: Sent, 201: Sent}, errors=(403, 404, 409, 429), body=NewMessage)
def post_message(conversation_id: int, body: NewMessage):
    """Send a message: the same send path as the socket's send_message event.

    The same validation, rate limit (CHAT_RATE_LIMIT, 429 with Retry-After), de-duplication by
    client_id (a retry answers 200 with the original and duplicate true; the same id with
    another text is 409 conflict) and fan-out to every open socket. 201 with the message; 403
    for a conversation you are not in; 404 for a reply_to or an attachment that names nothing
    of yours in it.
    """
    return send_from_body(current_user, conversation_id, body)


# --------------------------------------------------------------------------- webhooks


@operation(bp, "/hooks/<secret>", "POST", answers={200: Sent, 201: Sent},
           errors=(404, 409, 429), body=IncomingHookMessage, auth=SECRET_URL, tag="webhooks")
def incoming_hook(secret: str, body: IncomingHookMessage):
    """Post into a conversation as an incoming webhook's bot.

    The URL is the secret (`flask webhooks create --conversation ID --incoming`); answers as
    the send path does, 404 for an unknown or deleted hook.
    """
    from simplechat.webhooks.hooks import incoming_hook_sender

    found = incoming_hook_sender(secret)
    if found is None:
        return send_answer({"ok": False, "error": "not_found"})
    bot, conversation_id = found
    return send_from_body(bot, conversation_id, body)


# --------------------------------------------------------------------------- the document


@operation(bp, "/openapi.json", answers={200: None}, auth=PUBLIC, tag="meta")
def openapi():
    """This document: every /api/ route, its parameters, bodies, answers and errors."""
    return jsonify(api_document())


def api_document() -> dict:
    app = current_app._get_current_object()
    document = app.extensions.get("simplechat.openapi")
    if document is None:
        document = app.extensions.setdefault("simplechat.openapi", openapi_document(app))
    return document


@docs_bp.get("/api")
def api_page():
    """The OpenAPI document as a page for people."""
    document = api_document()
    operations = [(path, method, entry) for path, methods in document["paths"].items()
                  for method, entry in methods.items()]
    return render_template("api/docs.html", document=document, operations=operations)
