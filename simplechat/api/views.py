"""The routes of the JSON API for programs: parse, call the chat feature's functions, answer."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_login import current_user
from sqlalchemy import select

from simplechat.api.schemas import (
    ConversationAnswer,
    ConversationList,
    ConversationListQuery,
    ConversationOne,
    IncomingHookMessage,
    Me,
    MembersPage,
    MembersQuery,
    MuteChange,
    Muted,
    NewConversation,
    NewMessage,
    Sent,
    SlackMessage,
)
from simplechat.api.spec import PUBLIC, SECRET_URL, TEXT, openapi_document, operation
from simplechat.conversations.channels import readable_conversation
from simplechat.conversations.inbox import ConversationSummary, inbox_page, parse_cursor
from simplechat.conversations.records import participant_conversation, set_muted, start_limited
from simplechat.conversations.roster import members_page, parse_member_cursor
from simplechat.extensions import db
from simplechat.messaging.send import send_message
from simplechat.models import User
from simplechat.observability.activity import record_activity
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint
from simplechat.webhooks.slack import SlackPayloadError, parse_payload, to_markdown

bp = ApiBlueprint("rest", __name__)
docs_bp = Blueprint("api_docs", __name__)

# The HTTP status of each error code of the send path's acknowledgement.
SEND_STATUS = {"invalid": 400, "empty": 400, "too_long": 400, "too_many": 400,
               "not_group": 400, "unauthorized": 401, "forbidden": 403, "not_allowed": 403,
               "not_found": 404, "conflict": 409, "already_sent": 409, "archived": 409,
               "rate_limited": 429, "unavailable": 503}


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
                                    getattr(body, "attachments", None),
                                    getattr(body, "thread_id", None),
                                    getattr(body, "also_to_conversation", None),
                                    unknown="not_found"))


# --------------------------------------------------------------------------- me, conversations


@operation(bp, "/me", answers={200: Me}, tag="people")
def me():
    """The caller: id, username, names, and whether it is a bot."""
    user = current_user
    return jsonify({"id": user.id, "username": user.username, "first_name": user.first_name,
                    "last_name": user.last_name, "name": user.full_name,
                    "is_bot": bool(user.is_bot)})


def person(user: User) -> dict:
    return {"id": user.id, "username": user.username, "name": user.full_name,
            "is_bot": bool(user.is_bot)}


def conversation_view(s: ConversationSummary) -> dict:
    """A conversation of the list as the API shows it."""
    return {
        "id": s.id, "title": s.title, "is_group": s.is_group,
        "visibility": s.visibility, "description": s.description, "archived": s.archived,
        "role": s.role, "member_count": s.member_count,
        "participants": [{**person(m.user), "role": m.role} for m in s.members],
        "last_message": None if s.last_id is None else {
            "id": s.last_id, "sender": s.last_sender_id, "message": s.last_text or "",
            "preview": s.preview or "",
            "timestamp": s.last_at.strftime("%Y-%m-%d %H:%M:%S")},
        "unread": s.unread,
        "unread_mentions": s.mentions,
        "muted": s.muted,
    }


def conversation_views(user: User, only: int | None = None) -> list[dict]:
    """The first page of the caller's conversations (or the one ``only``), newest activity
    first, as the API shows them."""
    return [conversation_view(s) for s in inbox_page(user, only=only).conversations]


@operation(bp, "/conversations", answers={200: ConversationList}, query=ConversationListQuery)
def list_conversations(query: ConversationListQuery):
    """My conversations, newest activity first, a page at a time.

    Each with its title, kind, visibility, description, my role, member count, first 50
    participants, last message, unread count and how many of the unread messages mention me.
    `limit` conversations (default 50, at most 200); pass `next_before` back as `before` for
    the next page (null on the last).
    """
    before = parse_cursor(query.before) if query.before is not None else None
    page = inbox_page(current_user, query.limit, before)
    return jsonify({"ok": True,
                    "conversations": [conversation_view(s) for s in page.conversations],
                    "next_before": page.next_before})


@operation(bp, "/conversations/<id:conversation_id>/members", answers={200: MembersPage},
           errors=(404,), query=MembersQuery)
def conversation_members(conversation_id: int, query: MembersQuery):
    """A page of a conversation's members with their roles: owners, admins, then by name.

    `limit` members (default 50, at most 200: the first page is the conversation's
    `participants`); pass `next_before` back as `before` for the next page (null on the last).
    Participants only, but for a public channel, which anyone signed in may look into as its
    messages; anyone else gets 404.
    """
    if readable_conversation(current_user.id, conversation_id) is None:
        return send_answer({"ok": False, "error": "not_found"})
    before = parse_member_cursor(query.before) if query.before is not None else None
    page = members_page(conversation_id, query.limit, before)
    return jsonify({"ok": True,
                    "members": [{**person(m.user), "role": m.role} for m in page.members],
                    "next_before": page.next_before})


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
    limit = current_app.config["CHAT_MAX_MEMBERS"]
    if len(wanted) + 1 > limit:
        return send_answer({"ok": False, "error": "too_many", "max_participants": limit})
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
    of yours in it, or a thread_id that names no root there (a thread reply, a system
    line). With thread_id the message is a reply in that thread, kept out of the
    conversation's own flow unless also_to_conversation is true; the root's summary (`thread`)
    is updated for the room (`message_updated`).
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


@operation(bp, "/hooks/<secret>/slack", "POST", answers={200: TEXT},
           errors=(404, 409, 429), raw_body=SlackMessage, form_field="payload",
           auth=SECRET_URL, tag="webhooks")
def incoming_slack_hook(secret: str):
    """Post Slack's message payload into a conversation as an incoming webhook's bot.

    The same hook and secret as POST /api/hooks/{secret}, for tools that post to Slack
    (Alertmanager, Grafana, CI): the body is Slack's JSON, or a form whose `payload` field holds
    it. `text`, `attachments` and `blocks` become the chat's Markdown (docs/INTEGRATIONS.md),
    then go through the send path as any message (sanitized, CHAT_MAX_MESSAGE_LENGTH,
    CHAT_RATE_LIMIT). Answers `ok` as plain text; 400 invalid for a body that is not Slack's
    shape, empty when it shows nothing, too_long past the limit; 404 for an unknown or deleted
    hook. Nothing is posted unless the answer is 200.
    """
    from simplechat.webhooks.hooks import incoming_hook_sender

    found = incoming_hook_sender(secret)
    if found is None:
        return send_answer({"ok": False, "error": "not_found"})
    try:
        text = to_markdown(slack_payload())
    except SlackPayloadError:
        return api_error("invalid", 400)
    bot, conversation_id = found
    ack = send_message(bot, conversation_id, text, unknown="not_found")
    if not ack["ok"]:
        return send_answer(ack)
    return Response("ok", 200, mimetype="text/plain")


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def slack_payload() -> dict:
    """The request's Slack payload: the JSON body, or the JSON in the form field ``payload``
    (a form of one field holding the JSON itself, as ``curl -d '{...}'`` sends it, too)."""
    if request.mimetype not in FORM_TYPES:
        return parse_payload(request.get_data())
    form = request.form
    fields = form.getlist("payload")
    if len(fields) == 1 and len(form) == 1:
        return parse_payload(fields[0])
    if not fields and len(form) == 1 and not next(iter(form.values())):
        return parse_payload(next(iter(form.keys())))
    raise SlackPayloadError("the form has no single payload field")


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
