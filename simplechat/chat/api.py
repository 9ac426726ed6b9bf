"""The JSON API: user search for Select2 and paging older messages."""

from __future__ import annotations

from flask import current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import func, or_, select

from ..extensions import db
from ..http_errors import api_error
from ..models import User
from ..strict_numbers import MAX_ID, parse_int
from . import api_bp
from .conversations import participant_conversation
from .history import messages_before
from .ids import parse_message_id
from .search import MAX_QUERY, search_messages

SEARCH_LIMIT = 20
MAX_SEARCH_PAGE = 1000


@api_bp.before_request
def require_login():
    if not current_user.is_authenticated:
        return api_error("unauthorized", 401)
    return None


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@api_bp.get("/users")
def users():
    """Active users other than me whose username, first or last name start with q, or whose
    e-mail address is q."""
    q = request.args.get("q", "").strip().lower()
    # No name holds a NUL, and PostgreSQL refuses one in any string (a 500, not a miss).
    if len(q) > 100 or "\x00" in q:
        return api_error("invalid", 400)
    query = select(User).where(User.id != current_user.id, User.is_active.is_(True))
    if q:
        pattern = _escape_like(q) + "%"
        query = query.where(or_(
            func.lower(User.username).like(pattern, escape="\\"),
            func.lower(User.first_name).like(pattern, escape="\\"),
            func.lower(User.last_name).like(pattern, escape="\\"),
            # The whole address only: matching prefixes of it would let anyone read other
            # users' addresses out one character at a time.
            User.email == q,
        ))
    found = db.session.scalars(query.order_by(User.username).limit(SEARCH_LIMIT))
    return jsonify({"results": [
        {"id": u.id, "text": f"{u.full_name} (@{u.username})"} for u in found
    ]})


@api_bp.get("/conversations/<id:conversation_id>/messages")
def conversation_messages(conversation_id: int):
    """A page of older messages (oldest first within the page), newest page first."""
    if participant_conversation(current_user.id, conversation_id) is None:
        return api_error("not_found", 404)
    before = request.args.get("before")
    if before is not None:
        before = parse_message_id(before)
        if before is None:
            return api_error("invalid", 400)
    limit = parse_int(request.args.get("limit", "50"), 1, MAX_ID)
    if limit is None:
        return api_error("invalid", 400)
    limit = min(limit, current_app.config["CHAT_HISTORY_PAGE_MAX"])
    messages, has_more, _source = messages_before(conversation_id, before, limit)
    return jsonify({"ok": True, "messages": messages, "has_more": has_more})


@api_bp.get("/search")
def search():
    """Messages of my conversations matching ``q``, newest first, 20 a page."""
    q = request.args.get("q", "").strip()
    page = parse_int(request.args.get("page", "1"), 1, MAX_SEARCH_PAGE)
    if len(q) > MAX_QUERY or page is None:
        return api_error("invalid", 400)
    return jsonify({"ok": True, **search_messages(current_user.id, q, page)})
