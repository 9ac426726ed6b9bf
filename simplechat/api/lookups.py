"""The JSON API: user search for Select2, paging messages, message search. Declared with
``api.spec.operation``, so the OpenAPI document describes them."""

from __future__ import annotations

from flask import current_app, jsonify
from flask_login import current_user
from sqlalchemy import func, or_, select

from simplechat.api.schemas import (
    HistoryQuery,
    MessagesPage,
    SearchPage,
    SearchQuery,
    UserSearch,
    UserSearchQuery,
)
from simplechat.api.spec import operation
from simplechat.conversations.channels import readable_conversation
from simplechat.conversations.search import MAX_QUERY, search_messages
from simplechat.extensions import db
from simplechat.messaging.history import messages_after, messages_before
from simplechat.models import User
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint

api_bp = ApiBlueprint("api", __name__)

SEARCH_LIMIT = 20
MAX_SEARCH_PAGE = 1000


@api_bp.before_request
def require_login():
    if not current_user.is_authenticated:
        return api_error("unauthorized", 401)
    return None


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@operation(api_bp, "/users", answers={200: UserSearch}, query=UserSearchQuery, tag="people")
def users(query: UserSearchQuery):
    """Find people to start a conversation with.

    Active users other than me whose username, first or last name start with q, or whose
    e-mail address is q (the whole address); 20 at most, as Select2 options.
    """
    q = query.q.strip().lower()
    # No name holds a NUL, and PostgreSQL refuses one in any string (a 500, not a miss).
    if len(q) > 100 or "\x00" in q:
        return api_error("invalid", 400)
    found_query = select(User).where(User.id != current_user.id, User.is_active.is_(True))
    if q:
        pattern = _escape_like(q) + "%"
        found_query = found_query.where(or_(
            func.lower(User.username).like(pattern, escape="\\"),
            func.lower(User.first_name).like(pattern, escape="\\"),
            func.lower(User.last_name).like(pattern, escape="\\"),
            # The whole address only: matching prefixes of it would let anyone read other
            # users' addresses out one character at a time.
            User.email == q,
        ))
    found = db.session.scalars(found_query.order_by(User.username).limit(SEARCH_LIMIT))
    return jsonify({"results": [
        {"id": u.id, "text": f"{u.full_name} (@{u.username})"} for u in found
    ]})


@operation(api_bp, "/conversations/<id:conversation_id>/messages", answers={200: MessagesPage},
           errors=(404,), query=HistoryQuery)
def conversation_messages(conversation_id: int, query: HistoryQuery):
    """A page of a conversation's messages, oldest first within the page.

    Without `before` or `after`: the newest page. `before`: the page older than that message
    (walk back while has_more). `after`: the messages newer than that one (catching up).
    Participants only, but for a public channel, which anyone signed in may read (a preview:
    posting still needs joining); anyone else gets 404.
    """
    if readable_conversation(current_user.id, conversation_id) is None:
        return api_error("not_found", 404)
    if query.before is not None and query.after is not None:
        return api_error("invalid", 400)
    limit = min(query.limit, current_app.config["CHAT_HISTORY_PAGE_MAX"])
    if query.after is not None:
        messages, has_more, _source = messages_after(conversation_id, query.after)
        has_more = has_more or len(messages) > limit
        messages = messages[:limit]
    else:
        messages, has_more, _source = messages_before(conversation_id, query.before, limit)
    return jsonify({"ok": True, "messages": messages, "has_more": has_more})


@operation(api_bp, "/search", answers={200: SearchPage}, query=SearchQuery)
def search(query: SearchQuery):
    """Search the messages of my conversations.

    Every word of q must match (a word's start); newest first, 20 a page.
    """
    q = query.q.strip()
    if len(q) > MAX_QUERY:
        return api_error("invalid", 400)
    return jsonify({"ok": True, **search_messages(current_user.id, q, query.page)})
