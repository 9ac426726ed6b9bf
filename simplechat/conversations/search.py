"""Searching the messages of my conversations: full-text search, or LIKE on SQLite."""

from __future__ import annotations

import re

from sqlalchemy import func, select, text

from simplechat.extensions import db
from simplechat.models import Conversation, Message, Participant, User

PAGE_SIZE = 20
SNIPPET_RADIUS = 60
MAX_QUERY = 200
_WORD = re.compile(r"\w+", re.UNICODE)


def _terms(query: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(query)][:10]


def search_messages(user_id: int, query: str, page: int = 1) -> dict:
    """Messages of the user's conversations matching every word of ``query``, newest first."""
    terms = _terms(query)
    if not terms:
        return {"results": [], "page": page, "has_more": False}
    mine = select(Participant.conversation_id).where(Participant.user_id == user_id)
    stmt = (
        select(Message, User.first_name, User.last_name, User.username, Conversation)
        .join(User, User.id == Message.sender_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.conversation_id.in_(mine), Message.deleted_at.is_(None))
    )
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        tsquery = func.to_tsquery("simple", " & ".join(t + ":*" for t in terms))
        stmt = stmt.where(func.to_tsvector("simple", Message.text).op("@@")(tsquery))
    elif dialect in ("mysql", "mariadb"):
        boolean = " ".join(f"+{t}*" for t in terms)
        stmt = stmt.where(text("MATCH (messages.text) AGAINST (:q IN BOOLEAN MODE)")
                          .bindparams(q=boolean))
    else:
        for term in terms:
            escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(func.lower(Message.text).like(f"%{escaped}%", escape="\\"))
    rows = db.session.execute(
        stmt.order_by(Message.created_at.desc(), Message.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    ).all()
    from simplechat.conversations.records import display_title, participants_of

    titles: dict[int, str] = {}  # a direct conversation's is the other person's name
    for m, *_, conversation in rows[:PAGE_SIZE]:
        if m.conversation_id not in titles:
            titles[m.conversation_id] = display_title(
                conversation, user_id,
                [] if conversation.title else participants_of(conversation.id))
    results = [{
        "id": m.id,
        "conversation_id": m.conversation_id,
        "conversation_title": titles[m.conversation_id],
        "sender": m.sender_id,
        "sender_name": f"{first} {last}".strip() or username,
        "timestamp": m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "snippet": snippet(m.text, terms),
    } for m, first, last, username, _ in rows[:PAGE_SIZE]]
    return {"results": results, "page": page, "has_more": len(rows) > PAGE_SIZE}


def snippet(body: str, terms: list[str]) -> list[dict]:
    """A short excerpt around the first match as segments ``{"text", "match"}``.

    Segments, not HTML: the client inserts each as text and marks the matches itself, so a
    message can never inject markup through its highlight.
    """
    lowered = body.lower()
    hits = [(m.start(), m.end()) for t in terms
            for m in re.finditer(r"\b" + re.escape(t), lowered)]
    first = min((s for s, _ in hits), default=0)
    start = max(0, first - SNIPPET_RADIUS)
    end = min(len(body), first + SNIPPET_RADIUS * 2)
    excerpt_hits = sorted((max(s, start), min(_word_end(lowered, e), end))
                          for s, e in hits if s < end and e > start)
    segments, cursor = [], start
    if start > 0:
        segments.append({"text": "…", "match": False})
    for s, e in excerpt_hits:
        if s < cursor:
            continue
        if s > cursor:
            segments.append({"text": body[cursor:s], "match": False})
        segments.append({"text": body[s:e], "match": True})
        cursor = e
    if cursor < end:
        segments.append({"text": body[cursor:end], "match": False})
    if end < len(body):
        segments.append({"text": "…", "match": False})
    return segments


def _word_end(text_: str, index: int) -> int:
    """Extend a prefix match to the end of its word, as the prefix search matched it."""
    match = _WORD.match(text_, index)
    return match.end() if match else index
